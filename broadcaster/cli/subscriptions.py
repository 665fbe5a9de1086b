"""``maintcast subscriptions …``: notification subscriptions through the HTTP API
(``MAINTCAST_URL``, ``MAINTCAST_TOKEN`` with the admin role)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from broadcaster import codec
from broadcaster.cli.base import app, fail, settings_or_fail
from broadcaster.cli.client import _call, _or_fail, parse_affected

subscriptions_app = typer.Typer(
    no_args_is_help=True, help="Notification subscriptions: webhooks and e-mail (admin role)."
)
app.add_typer(subscriptions_app, name="subscriptions")
Opt = typer.Option
OutputOpt = Annotated[str, Opt("-o", "--output", help="text (default) or json.")]


def _json_or(output: str) -> bool:
    if output not in ("text", "json"):
        fail(f"-o must be text or json, got {output!r}")
    return output == "json"


def _target(s: Any) -> str:
    return str(s["url"] or s["email"])


def _scope(s: Any) -> str:
    if s["scope"] is None:
        return "*"
    return " ".join(f"{svc}={','.join(ms)}" for svc, ms in s["scope"].items())


def _show(s: Any) -> None:
    typer.echo(
        f"{s['id']}  {s['kind']:<7}  {s['state']:<8}  {s['lang']}  {_target(s)}  "
        f"scope={_scope(s)}  events={','.join(s['events'])}"
    )


def _show_secret(s: Any) -> None:
    if s.get("secret"):
        typer.echo(f"secret (shown once; verify signatures with it): {s['secret']}")
    if s.get("previous_secret_expires_at"):
        typer.echo(f"the previous secret also signs until {s['previous_secret_expires_at']}")


def _show_delivery(d: Any) -> None:
    result = d["status_code"] if d["status_code"] is not None else (d["error"] or "-")
    when = d["at"] or d["queued_at"]
    typer.echo(
        f"{d['message_id']}  {d['type']:<23}  {d['state']:<9}  attempt {d['attempt']}  "
        f"{when}  {result}" + (f"  next {d['next_at']}" if d["next_at"] else "")
    )


@subscriptions_app.command("list")
def subscriptions_list(output: OutputOpt = "text") -> None:
    """List the subscriptions (never their secrets)."""
    subs = _call(settings_or_fail(), "GET", "/v1/subscriptions")["subscriptions"]
    if _json_or(output):
        typer.echo(codec.pretty(subs))
        return
    for s in subs:
        _show(s)


@subscriptions_app.command("add")
def subscriptions_add(
    url: Annotated[str | None, Opt(help="Webhook URL (https://…).")] = None,
    email: Annotated[str | None, Opt(help="E-mail address.")] = None,
    lang: Annotated[str, Opt(help="ja or en.")] = "ja",
    scope: Annotated[
        list[str] | None, Opt(help="SERVICE=* or SERVICE=m1,m2; repeat (default: all).")
    ] = None,
    events: Annotated[
        list[str] | None, Opt(help="Event-type glob, e.g. 'maintenance.*'; repeat.")
    ] = None,
    id: Annotated[str | None, Opt("--id", help="Subscription id (default: generated).")] = None,
) -> None:
    """Subscribe a webhook (--url) or an e-mail address (--email); prints the secret once."""
    if (url is None) == (email is None):
        fail("give --url (a webhook) or --email")
    body: dict[str, Any] = {"kind": "webhook" if url else "email", "lang": lang}
    body.update({k: v for k, v in {"url": url, "email": email, "id": id}.items() if v})
    if scope:
        body["scope"] = _or_fail(parse_affected, scope)
    if events:
        body["events"] = events
    made = _call(settings_or_fail(), "POST", "/v1/subscriptions", body=body)
    _show(made)
    _show_secret(made)


@subscriptions_app.command("remove")
def subscriptions_remove(sub_id: str) -> None:
    """Remove a subscription and its queued messages."""
    _call(settings_or_fail(), "DELETE", f"/v1/subscriptions/{sub_id}")
    typer.echo(f"removed {sub_id}")


subscriptions_app.command("rm", help="Same as remove.")(subscriptions_remove)


@subscriptions_app.command("rotate")
def subscriptions_rotate(sub_id: str) -> None:
    """A new webhook secret (printed once); the current one keeps signing for 24 h."""
    s = _call(settings_or_fail(), "POST", f"/v1/subscriptions/{sub_id}/rotate-secret")
    _show(s)
    _show_secret(s)


@subscriptions_app.command("test")
def subscriptions_test(
    sub_id: str,
    wait: Annotated[float, Opt(help="Seconds to wait for the attempt (0: do not wait).")] = 15,
) -> None:
    """Send a ping; wait for its first attempt and print it (exit 1 unless delivered)."""
    settings = settings_or_fail()
    mid = _call(settings, "POST", f"/v1/subscriptions/{sub_id}/test")["message_id"]
    typer.echo(f"queued {mid}")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for d in _call(settings, "GET", f"/v1/subscriptions/{sub_id}/deliveries", limit=20)[
            "deliveries"
        ]:
            if d["message_id"] == mid and d["attempt"] > 0 and d["at"] is not None:
                _show_delivery(d)
                raise typer.Exit(0 if d["state"] == "delivered" else 1)
        time.sleep(0.3)
    if wait > 0:
        fail(f"{mid} not attempted within {wait:g} s (is a worker or API process running?)")


@subscriptions_app.command("deliveries")
def subscriptions_deliveries(
    sub_id: str,
    limit: Annotated[int, Opt(min=1, max=1000, help="How many, newest first.")] = 20,
    output: OutputOpt = "text",
) -> None:
    """The subscription's latest messages: pending, delivered, failed."""
    found = _call(settings_or_fail(), "GET", f"/v1/subscriptions/{sub_id}/deliveries", limit=limit)[
        "deliveries"
    ]
    if _json_or(output):
        typer.echo(codec.pretty(found))
        return
    for d in found:
        _show_delivery(d)


@subscriptions_app.command("replay")
def subscriptions_replay(
    sub_id: str,
    after_seq: Annotated[int, Opt(min=0, help="Queue again the events after this seq.")],
) -> None:
    """Queue again the messages of the events after --after-seq (failed ones included)."""
    r = _call(
        settings_or_fail(),
        "POST",
        f"/v1/subscriptions/{sub_id}/replay",
        body={"after_seq": after_seq},
    )
    span = f" (events {r['first_seq']}..{r['last_seq']})" if r["first_seq"] is not None else ""
    typer.echo(f"queued {r['queued']} message(s){span}")
