"""The subscription routes over the ASGI app and fakeredis: create, list, get, delete,
rotate, test pings, deliveries, replays; validation naming the field; roles; OpenAPI."""

from __future__ import annotations

import base64
import contextlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from standardwebhooks import Webhook

from broadcaster.app import create_app
from broadcaster.auth import Tokens, entry_line
from broadcaster.notify.subscriptions import ROTATION_OVERLAP_S
from broadcaster.store import Store
from broadcaster.store.notify import NotifyStore
from broadcaster.validation import parse_schedule
from tests.support import DEFAULTS, EXAMPLE, FixedClock, free_port, jst, settings_for

OP, AD = "op-token-1", "admin-token-1"
TOKENS = entry_line("ops", "operator", OP) + "," + entry_line("boss", "admin", AD)
ADMIN = {"Authorization": f"Bearer {AD}"}
OPERATOR = {"Authorization": f"Bearer {OP}"}
HOOK = {"kind": "webhook", "url": "https://merchant.example/hooks/maintcast"}
SECRET = re.compile(r"^whsec_[A-Za-z0-9+/]+={0,2}$")


@dataclass
class Ctx:
    client: httpx.AsyncClient
    store: Store
    notify: NotifyStore

    async def create(self, **body: Any) -> dict[str, Any]:
        r = await self.client.post("/v1/subscriptions", json={**HOOK, **body}, headers=ADMIN)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def api(fake_redis: Any, key_prefix: str, **settings: Any) -> AsyncIterator[Ctx]:
    """The example imported (seq 1), an app over it, a client driving it in process."""
    clock = FixedClock(jst(2021, 6, 1, 10))
    app = create_app(
        settings_for(None, key_prefix, **settings),
        redis=fake_redis,
        clock=clock,
        tokens=Tokens.parse(TOKENS),
    )
    store: Store = app.state.store
    text = EXAMPLE.read_text(encoding="utf-8")
    await store.import_schedule(
        parse_schedule(text, source="example", defaults=DEFAULTS, now=clock.now()), clock.now()
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield Ctx(client, store, NotifyStore.of(store))


def error_of(r: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"code", "message", "field"}
    assert err["message"]
    if field is not None:
        assert err["field"] == field, err
    return err  # type: ignore[no-any-return]


async def test_create_shows_the_secret_once(fake_redis: Any, key_prefix: str) -> None:
    async with api(fake_redis, key_prefix) as c:
        made = await c.create(id="acme", lang="en", scope={"webcollect": ["*"]})
        assert SECRET.match(made["secret"])
        raw = base64.b64decode(made["secret"].removeprefix("whsec_"))
        assert len(raw) >= 24
        Webhook(made["secret"])  # the reference library takes it as is
        assert made["id"] == "acme"
        assert made["state"] == "active"
        assert made["created_seq"] == 1
        assert made["events"] == ["*"]
        assert made["scope"] == {"webcollect": ["*"]}
        assert made["lang"] == "en"
        assert made["created_at"] == "2021-06-01T10:00:00+09:00"
        one = await c.client.get("/v1/subscriptions/acme", headers=ADMIN)
        listed = await c.client.get("/v1/subscriptions", headers=ADMIN)
        for r in (one, listed):
            assert r.status_code == 200
            assert "secret" not in r.text.replace("previous_secret", "")
            assert made["secret"] not in r.text
        assert one.json() == {k: v for k, v in made.items() if k != "secret"}
        assert [s["id"] for s in listed.json()["subscriptions"]] == ["acme"]


async def test_email_subscription_has_no_secret(fake_redis: Any, key_prefix: str) -> None:
    async with api(fake_redis, key_prefix) as c:
        r = await c.client.post(
            "/v1/subscriptions",
            json={"kind": "email", "email": "ops@merchant.example", "lang": "ja"},
            headers=ADMIN,
        )
        assert r.status_code == 201, r.text
        assert r.json()["secret"] is None
        assert r.json()["email"] == "ops@merchant.example"
        assert r.json()["id"].startswith("s-")
        assert r.json()["url"] is None
        rot = await c.client.post(
            f"/v1/subscriptions/{r.json()['id']}/rotate-secret", headers=ADMIN
        )
        error_of(rot, 422, "kind")


BAD: list[tuple[dict[str, Any], str]] = [
    ({"url": "https://x.example/h"}, "kind"),
    ({"kind": "sms", "url": "https://x.example/h"}, "kind"),
    ({"kind": "webhook"}, "url"),
    ({**HOOK, "url": "http://merchant.example/h"}, "url"),
    ({**HOOK, "url": "ftp://merchant.example/h"}, "url"),
    ({**HOOK, "url": "https://user:pw@merchant.example/h"}, "url"),
    ({**HOOK, "url": "https:///nohost"}, "url"),
    ({**HOOK, "url": "https://merchant.example/h#frag"}, "url"),
    ({**HOOK, "url": "https://merchant.example/a b"}, "url"),
    ({**HOOK, "url": "https://merchant.example:99999/h"}, "url"),
    ({**HOOK, "email": "a@b.example"}, "email"),
    ({"kind": "email", "email": "not-an-address"}, "email"),
    ({"kind": "email"}, "email"),
    ({"kind": "email", "email": "a@b.example", "url": "https://x.example"}, "url"),
    ({**HOOK, "scope": {"nope": ["*"]}}, "scope.nope"),
    ({**HOOK, "scope": {"atobarai": ["paypay"]}}, "scope.atobarai"),
    ({**HOOK, "scope": {"atobarai": []}}, "scope.atobarai"),
    ({**HOOK, "scope": {}}, "scope"),
    ({**HOOK, "events": ["payment.*"]}, "events.0"),
    ({**HOOK, "events": ["maintenance.*", "Bad Glob"]}, "events.1"),
    ({**HOOK, "events": []}, "events"),
    ({**HOOK, "lang": "fr"}, "lang"),
    ({**HOOK, "secret": "whsec_AAAA"}, "secret"),
    ({**HOOK, "id": "Not An Id"}, "id"),
]


@pytest.mark.parametrize(("body", "field"), BAD)
async def test_invalid_subscriptions_name_the_field(
    fake_redis: Any, key_prefix: str, body: dict[str, Any], field: str
) -> None:
    async with api(fake_redis, key_prefix) as c:
        r = await c.client.post("/v1/subscriptions", json=body, headers=ADMIN)
        err = error_of(r, 422, field)
        assert err["code"] == "invalid"
        assert err["message"].startswith(field.split(".")[0])
        assert await c.notify.subscriptions() == []


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/h", "http://localhost:8080/h", "http://[::1]/h"]
)
async def test_http_is_allowed_for_loopback(fake_redis: Any, key_prefix: str, url: str) -> None:
    async with api(fake_redis, key_prefix) as c:
        assert (await c.create(url=url))["url"] == url


async def test_http_is_allowed_by_setting(fake_redis: Any, key_prefix: str) -> None:
    async with api(fake_redis, key_prefix, webhook_allow_http=True) as c:
        assert (await c.create(url="http://merchant.example/h"))["url"].startswith("http://")


async def test_duplicate_id_is_a_conflict(fake_redis: Any, key_prefix: str) -> None:
    async with api(fake_redis, key_prefix) as c:
        await c.create(id="acme")
        r = await c.client.post("/v1/subscriptions", json={**HOOK, "id": "acme"}, headers=ADMIN)
        error_of(r, 409, "id")


ROUTES = [
    ("POST", "/v1/subscriptions", HOOK),
    ("GET", "/v1/subscriptions", None),
    ("GET", "/v1/subscriptions/acme", None),
    ("DELETE", "/v1/subscriptions/acme", None),
    ("POST", "/v1/subscriptions/acme/rotate-secret", None),
    ("POST", "/v1/subscriptions/acme/test", None),
    ("GET", "/v1/subscriptions/acme/deliveries", None),
    ("POST", "/v1/subscriptions/acme/replay", {"after_seq": 0}),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_every_route_needs_an_admin_token(
    fake_redis: Any, key_prefix: str, method: str, path: str, body: Any
) -> None:
    async with api(fake_redis, key_prefix) as c:
        await c.create(id="acme")
        anonymous = await c.client.request(method, path, json=body)
        error_of(anonymous, 401)
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        error_of(await c.client.request(method, path, json=body, headers=OPERATOR), 403)
        assert [s.id for s in await c.notify.subscriptions()] == ["acme"]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES[2:])
async def test_unknown_subscription_is_404(
    fake_redis: Any, key_prefix: str, method: str, path: str, body: Any
) -> None:
    async with api(fake_redis, key_prefix) as c:
        r = await c.client.request(method, path, json=body, headers=ADMIN)
        error_of(r, 404, "id")


async def test_rotation_keeps_the_old_secret_signing_for_a_day(
    fake_redis: Any, key_prefix: str
) -> None:
    async with api(fake_redis, key_prefix) as c:
        old = (await c.create(id="acme"))["secret"]
        before = time.time()
        r = await c.client.post("/v1/subscriptions/acme/rotate-secret", headers=ADMIN)
        assert r.status_code == 200, r.text
        new = r.json()["secret"]
        assert SECRET.match(new)
        assert new != old
        assert r.json()["previous_secret_expires_at"] is not None
        sub = await c.notify.subscription("acme")
        assert sub.signing_secrets(time.time()) == [new, old]
        assert sub.signing_secrets(before + ROTATION_OVERLAP_S + 5) == [new]
        shown = (await c.client.get("/v1/subscriptions/acme", headers=ADMIN)).json()
        assert shown["previous_secret_expires_at"] == r.json()["previous_secret_expires_at"]
        # a second rotation: the first secret stops at once, the second signs for a day
        newer = (await c.client.post("/v1/subscriptions/acme/rotate-secret", headers=ADMIN)).json()
        sub = await c.notify.subscription("acme")
        assert sub.signing_secrets(time.time()) == [newer["secret"], new]


async def test_ping_is_queued_and_listed(fake_redis: Any, key_prefix: str) -> None:
    async with api(fake_redis, key_prefix) as c:
        await c.create(id="acme", scope={"atobarai": ["bank_transfer"]})
        r = await c.client.post("/v1/subscriptions/acme/test", headers=ADMIN)
        assert r.status_code == 202, r.text
        mid = r.json()["message_id"]
        assert re.fullmatch(r"ping_[0-9a-f]{16}", mid)
        assert r.json()["state"] == "pending"
        listed = (await c.client.get("/v1/subscriptions/acme/deliveries", headers=ADMIN)).json()
        [d] = listed["deliveries"]
        assert d["message_id"] == mid
        assert d["type"] == "ping"
        assert d["state"] == "pending"
        assert d["attempt"] == 0
        assert d["at"] is None
        assert d["seq"] is None
        assert d["status_code"] is None
        assert d["error"] is None
        assert d["next_at"] is not None
        [msg] = await c.notify.deliveries("acme", 10)
        body = __import__("orjson").loads(msg.body)
        assert body["type"] == "ping"
        assert body["data"]["window"] is None
        assert body["data"]["status"]["components"] == {
            "atobarai": {"bank_transfer": "operational"}
        }


async def test_replay_queues_the_events_the_subscription_gets(
    fake_redis: Any, key_prefix: str
) -> None:
    async with api(fake_redis, key_prefix) as c:
        await c.create(id="cards", scope={"webcollect": ["credit_card"]})
        await c.create(id="bank", scope={"atobarai": ["bank_transfer"]})
        assert await c.store.stored_seq() == 1
        r = await c.client.post(
            "/v1/subscriptions/cards/replay", json={"after_seq": 0}, headers=ADMIN
        )
        assert r.status_code == 202, r.text
        assert r.json() == {"queued": 1, "first_seq": 1, "last_seq": 1}
        listed = (await c.client.get("/v1/subscriptions/cards/deliveries", headers=ADMIN)).json()
        assert [(d["message_id"], d["type"]) for d in listed["deliveries"]] == [
            ("msg_1", "maintenance.scheduled")
        ]
        # the 2021 window leaves bank_transfer up: nothing to replay for it
        r = await c.client.post(
            "/v1/subscriptions/bank/replay", json={"after_seq": 0}, headers=ADMIN
        )
        assert r.json() == {"queued": 0, "first_seq": 1, "last_seq": 1}
        r = await c.client.post(
            "/v1/subscriptions/cards/replay", json={"after_seq": 1}, headers=ADMIN
        )
        assert r.json() == {"queued": 0, "first_seq": None, "last_seq": None}
        for bad in ({"after_seq": 2}, {"after_seq": -1}, {}, {"after_seq": 0, "x": 1}):
            r = await c.client.post("/v1/subscriptions/cards/replay", json=bad, headers=ADMIN)
            error_of(r, 422)


async def test_delete_removes_the_subscription_and_its_messages(
    fake_redis: Any, key_prefix: str
) -> None:
    async with api(fake_redis, key_prefix) as c:
        await c.create(id="acme")
        await c.client.post("/v1/subscriptions/acme/test", headers=ADMIN)
        r = await c.client.delete("/v1/subscriptions/acme", headers=ADMIN)
        assert r.status_code == 204
        assert r.content == b""
        error_of(await c.client.get("/v1/subscriptions/acme", headers=ADMIN), 404, "id")
        error_of(await c.client.delete("/v1/subscriptions/acme", headers=ADMIN), 404, "id")
        keys = await fake_redis.keys(f"{{{key_prefix}}}:notify:*acme*")
        assert keys == []
        assert await fake_redis.zrange(c.notify.keys.notify_ready, 0, -1) == []


# the pages answer GET and HEAD from one function: FastAPI warns of its operation id twice
@pytest.mark.filterwarnings("ignore:Duplicate Operation ID:UserWarning")
async def test_openapi_describes_the_routes(fake_redis: Any, key_prefix: str) -> None:
    async with api(fake_redis, key_prefix) as c:
        doc = (await c.client.get("/openapi.json")).json()
    paths = doc["paths"]
    assert set(paths["/v1/subscriptions"]) == {"get", "post"}
    assert set(paths["/v1/subscriptions/{sub_id}"]) == {"get", "delete"}
    for tail in ("rotate-secret", "test", "replay"):
        assert "post" in paths[f"/v1/subscriptions/{{sub_id}}/{tail}"]
    assert "get" in paths["/v1/subscriptions/{sub_id}/deliveries"]
    schemas = doc["components"]["schemas"]
    assert {"kind", "url", "email", "lang", "scope", "events", "id"} <= set(
        schemas["SubscriptionIn"]["properties"]
    )
    assert "secret" in schemas["SubscriptionWithSecret"]["properties"]
    assert "secret" not in schemas["SubscriptionOut"]["properties"]
    assert {"message_id", "state", "next_at"} <= set(schemas["DeliveryOut"]["properties"])


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_a_store_outage_is_503_on_every_route(
    key_prefix: str, method: str, path: str, body: Any
) -> None:
    port = free_port()  # nothing listens there
    redis = aioredis.Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))
    app = create_app(
        settings_for(None, key_prefix),
        redis=redis,
        clock=FixedClock(jst(2021, 6, 1, 10)),
        tokens=Tokens.parse(TOKENS),
    )
    try:
        transport = httpx.ASGITransport(app=app)  # no lifespan: the hub never connects
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.request(method, path, json=body, headers=ADMIN)
    finally:
        await redis.aclose()
    err = error_of(r, 503)
    assert err["code"] == "store_unavailable"
    assert err["message"] == "store unavailable"
    assert str(port) not in r.text
