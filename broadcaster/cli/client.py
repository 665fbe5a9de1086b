"""``maintcast`` commands that talk to the HTTP API (``MAINTCAST_URL``, ``MAINTCAST_TOKEN``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer

from broadcaster import codec
from broadcaster.auth import ROLES, TokenConfigError, entry_line, new_token
from broadcaster.cli.base import (
    app,
    fail,
    override_app,
    settings_or_fail,
    token_app,
    windows_app,
)
from broadcaster.settings import Settings

T = TypeVar("T")
R = TypeVar("R")


def _call(settings: Settings, verb: str, path: str, *, body: Any = None, **params: Any) -> Any:
    """One API request (MAINTCAST_URL, MAINTCAST_TOKEN); a failure is one line and exit 1."""
    url = settings.url.rstrip("/") + path
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
    try:
        r = httpx.request(
            verb,
            url,
            params={k: v for k, v in params.items() if v is not None},
            content=None if body is None else codec.dumps(body),
            headers={**headers, "Content-Type": "application/json"},
            timeout=10,
        )
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        fail(f"cannot reach {settings.url}: {exc}")
    if r.status_code >= 400:
        try:
            err = r.json()["error"]
        except (ValueError, KeyError, TypeError):
            fail(f"{r.status_code} from {url}")
        hint = " (set MAINTCAST_TOKEN)" if r.status_code == 401 and not settings.token else ""
        fail(f"{r.status_code} {err.get('code')}: {err.get('message')}{hint}")
    if r.status_code == 204:
        return None
    try:
        return r.json()
    except ValueError:
        fail(f"{r.status_code} from {url} is not JSON (is MAINTCAST_URL a maintcast API?)")


def parse_duration(text: str) -> float:
    """Seconds in ``30m``, ``2h``, ``1h30m``, ``90s``, ``1d`` or plain seconds (``45``).

    Raises:
        typer.BadParameter: anything else, or zero.
    """
    m = re.fullmatch(
        r"\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text
    )
    if not text.strip() or m is None:
        raise typer.BadParameter(f"not a duration: {text!r} (e.g. 30m, 2h, 1h30m, 90s)")
    d, h, mi, sec = m.groups()
    total = int(d or 0) * 86400 + int(h or 0) * 3600 + int(mi or 0) * 60 + float(sec or 0)
    if total <= 0:
        raise typer.BadParameter(f"duration must be > 0: {text!r}")
    return total


def parse_affected(items: list[str] | None) -> dict[str, list[str]] | None:
    """``["webcollect=*", "atobarai=credit_card,cvs_online"]`` -> affected map (None if none).

    Raises:
        typer.BadParameter: an item without ``=`` or without methods.
    """
    if not items:
        return None
    out: dict[str, list[str]] = {}
    for item in items:
        service, sep, methods = item.partition("=")
        names = [m.strip() for m in methods.split(",") if m.strip()]
        if not sep or not service.strip() or not names:
            raise typer.BadParameter(f"--affected {item!r}: use SERVICE=* or SERVICE=m1,m2")
        out.setdefault(service.strip(), []).extend(names)
    return out


def _or_fail(parse: Callable[[T], R], value: T) -> R:
    """``parse(value)``, with a bad value reported as one line (not a usage box)."""
    try:
        return parse(value)
    except typer.BadParameter as exc:
        fail(str(exc))


def _show_window(w: Any) -> None:
    title = w["title"].get("ja") or w["title"].get("en")
    typer.echo(f"{w['id']}  {w['status']:<11}  {w['starts_at']} → {w['ends_at']}  {title}")


def _show_series(settings: Settings, series: Any) -> None:
    """A series, its rule, and how many of its occurrences exist, the next ones first."""
    _show_window(series)
    rec = series["recurrence"]
    skips = f" except {', '.join(rec['exdates'])}" if rec["exdates"] else ""
    typer.echo(f"  every {rec['rrule']} ({series['timezone']}){skips}")
    occ = _call(settings, "GET", "/v1/windows", series=series["id"])["windows"]
    ahead = [w["id"] for w in occ if w["status"] in ("scheduled", "in_progress")]
    typer.echo(f"  occurrences: {len(occ)} ({len(ahead)} to come: {', '.join(ahead[:3])}…)")


@windows_app.command("list")
def windows_list(
    series: Annotated[str | None, typer.Option(help="Only the occurrences of this series.")] = None,
) -> None:
    """List the announced windows (via the HTTP API, MAINTCAST_URL)."""
    for w in _call(settings_or_fail(), "GET", "/v1/windows", series=series)["windows"]:
        _show_window(w)


@app.command()
def status(service: str | None = None, method: str | None = None) -> None:
    """Print the current status (via MAINTCAST_URL)."""
    doc = _call(settings_or_fail(), "GET", "/v1/status", service=service, method=method)
    typer.echo(codec.pretty(doc))


@app.command()
def watch(service: str | None = None, method: str | None = None) -> None:
    """Tail the live stream: one line per status change (Ctrl-C to stop)."""
    from httpx_sse import connect_sse

    settings = settings_or_fail()
    params = {k: v for k, v in {"service": service, "method": method}.items() if v}
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(10, read=None)) as client,
            connect_sse(
                client, "GET", settings.url.rstrip("/") + "/v1/stream", params=params
            ) as source,
        ):
            for ev in source.iter_sse():
                if not ev.data:  # the opening `retry:` block carries no data
                    continue
                d = codec.loads(ev.data)
                cause = d["cause"] or {}
                typer.echo(
                    f"seq {d['seq']}  {d['as_of']}  {d['state']:<11}  "
                    f"{cause.get('type') or '-'}  until={d['until']}"
                )
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        fail(f"stream from {settings.url} failed: {exc}")
    except KeyboardInterrupt:
        pass


Opt = typer.Option


@windows_app.command("add")
def windows_add(
    file: Annotated[Path | None, Opt(help="A window object as JSON or YAML.")] = None,
    id: Annotated[str | None, Opt("--id")] = None,
    title: Annotated[str | None, Opt(help="Title (ja).")] = None,
    title_en: Annotated[str | None, Opt(help="Title (en).")] = None,
    starts_at: Annotated[str | None, Opt(help="RFC 3339, or local time with --timezone.")] = None,
    ends_at: Annotated[str | None, Opt()] = None,
    timezone: Annotated[str | None, Opt(help="IANA zone, e.g. Asia/Tokyo.")] = None,
    rrule: Annotated[
        str | None,
        Opt(help="Repeat on local time: an RFC 5545 RRULE, e.g. FREQ=MONTHLY;BYDAY=2TH."),
    ] = None,
    exdate: Annotated[
        list[str] | None, Opt(help="A local start the rule skips, e.g. 2021-09-09T01:00; repeat.")
    ] = None,
    affected: Annotated[list[str] | None, Opt(help="SERVICE=* or SERVICE=m1,m2; repeat.")] = None,
) -> None:
    """Schedule a window, or with --rrule a recurring series (admin role)."""
    import yaml

    if exdate and not rrule:
        fail("--exdate needs --rrule")

    if file is not None:
        try:
            body = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            fail(f"{file}: {' '.join(str(exc).split())}")  # one line, even for a YAML error
    else:
        texts = {k: v for k, v in {"ja": title, "en": title_en}.items() if v}
        body = {
            k: v
            for k, v in {
                "id": id,
                "title": texts or None,
                "starts_at": starts_at,
                "ends_at": ends_at,
                "recurrence": None if rrule is None else {"rrule": rrule, "exdates": exdate or []},
                "timezone": timezone,
                "affected": _or_fail(parse_affected, affected),
            }.items()
            if v is not None
        }
    settings = settings_or_fail()
    made = _call(settings, "POST", "/v1/windows", body=body)
    if made.get("recurrence"):
        _show_series(settings, made)
    else:
        _show_window(made)


@windows_app.command("reschedule")
def windows_reschedule(
    window_id: str,
    starts_at: Annotated[str | None, Opt()] = None,
    ends_at: Annotated[str | None, Opt()] = None,
    timezone: Annotated[str | None, Opt()] = None,
    reason: Annotated[str | None, Opt(help="Why (public text).")] = None,
    series: Annotated[
        bool, Opt("--series", help="WINDOW_ID is a series: move its future occurrences.")
    ] = False,
) -> None:
    """Move a window's start and/or end (admin role); the history records it. With
    --series, the first occurrence of a series: every future occurrence follows."""
    body = {
        k: v
        for k, v in {
            "starts_at": starts_at,
            "ends_at": ends_at,
            "timezone": timezone,
            "reason": reason,
        }.items()
        if v is not None
    }
    if not ({"starts_at", "ends_at"} & body.keys()):
        fail("give --starts-at and/or --ends-at")
    scope = "series" if series else None
    path = f"/v1/windows/{window_id}"
    _show_window(_call(settings_or_fail(), "PATCH", path, body=body, scope=scope))


@windows_app.command("cancel")
def windows_cancel(
    window_id: str,
    reason: Annotated[str | None, Opt(help="Why (public text).")] = None,
    series: Annotated[
        bool, Opt("--series", help="WINDOW_ID is a series: cancel what has not started.")
    ] = False,
) -> None:
    """Cancel a window (admin role); one in progress ends now. With --series, a series and
    its occurrences not started yet."""
    path = f"/v1/windows/{window_id}/cancel"
    scope = "series" if series else None
    _show_window(_call(settings_or_fail(), "POST", path, body={"reason": reason}, scope=scope))


@override_app.command("set")
def override_set(
    mode: Annotated[str, Opt(help="maintenance or normal.")],
    reason: Annotated[str, Opt(help="Why (public text).")],
    ttl: Annotated[str | None, Opt(help="Expire after e.g. 30m, 2h.")] = None,
    until: Annotated[str | None, Opt(help="Expire at this RFC 3339 instant.")] = None,
    affected: Annotated[list[str] | None, Opt(help="SERVICE=* or SERVICE=m1,m2; repeat.")] = None,
) -> None:
    """Force maintenance (or normal) now, beating the schedule (operator role)."""
    if ttl is not None and until is not None:
        fail("give --ttl or --until, not both")
    body: dict[str, Any] = {"mode": mode, "reason": reason}
    if ttl is not None:
        body["ttl_s"] = _or_fail(parse_duration, ttl)
    if until is not None:
        body["expires_at"] = until
    if affected:
        body["affected"] = _or_fail(parse_affected, affected)
    doc = _call(settings_or_fail(), "PUT", "/v1/override", body=body)
    typer.echo(f"seq {doc['seq']}: state {doc['state']}, override {doc['override']}")


@override_app.command("clear")
def override_clear(reason: Annotated[str | None, Opt(help="Why (public text).")] = None) -> None:
    """Clear the override: the schedule rules again (operator role)."""
    doc = _call(settings_or_fail(), "DELETE", "/v1/override", body={"reason": reason})
    typer.echo(f"seq {doc['seq']}: state {doc['state']}")


@token_app.command("create")
def token_create(
    name: Annotated[str, Opt(help="The actor name recorded with every change.")],
    role: Annotated[str, Opt(help="operator or admin.")],
) -> None:
    """Print a new random token and its MAINTCAST_TOKENS entry (only the entry is stored)."""
    if role not in ROLES:
        fail(f"--role must be operator or admin, got {role!r}")
    token = new_token()
    try:
        line = entry_line(name, role, token)  # type: ignore[arg-type]
    except TokenConfigError as exc:
        fail(f"--name: {exc}")
    typer.echo(f"token (give to the operator; shown once): {token}")
    typer.echo(f"entry (append to MAINTCAST_TOKENS or MAINTCAST_TOKENS_FILE): {line}")
