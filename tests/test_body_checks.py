"""Every JSON body is read the same way: the ops bodies that take only a ``reason`` (cancel,
clearing the override) refuse unknown fields, and the subscription bodies get the ops
bodies' checks — control characters refused, invalid JSON and non-objects ``422 invalid``
naming ``body``, unknown fields named (docs/security.md, issue 12 items 4 and 5)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ops_support import ADMIN, OPERATOR, WID, assert_error, ops_app

CONTROLS = ["\x00", "\x07", "\x1b", "\x7f", "\x9b", "\r", "\t", "\n"]
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("POST", f"/v1/windows/{WID}/cancel", ADMIN),
        ("DELETE", "/v1/override", OPERATOR),
    ],
)
async def test_reason_bodies_refuse_unknown_fields(
    fake_redis: Any, key_prefix: str, method: str, path: str, headers: dict[str, str]
) -> None:
    async with ops_app(fake_redis, key_prefix) as c:
        r = await c.client.put(
            "/v1/override", json={"mode": "maintenance", "reason": "setup"}, headers=OPERATOR
        )
        assert r.status_code == 200
        before = await c.snapshot()
        for body, field in (
            ({"reasn": "typo"}, "reasn"),
            ({"reason": "ok", "actor": "someone else"}, "actor"),
            ({"reason": 5}, "reason"),
            ({"reason": "x" * 2001}, "reason"),
        ):
            r = await c.client.request(method, path, json=body, headers=headers)
            err = assert_error(r, 422, "invalid", field)
            if field != "reason":
                assert "unknown field" in err["message"], err
        assert await c.snapshot() == before
        # what they do take still works
        r = await c.client.request(method, path, json={"reason": "fine"}, headers=headers)
        assert r.status_code == 200, r.text
        assert (await c.events())[-1]["reason"] == "fine"


def sub_bodies(ch: str) -> list[tuple[dict[str, Any], str]]:
    return [
        ({"kind": "email", "email": f"ops{ch}@merchant.example"}, "email"),
        ({"kind": "webhook", "url": f"https://merchant.example/h{ch}"}, "url"),
        ({"kind": "webhook", "url": "https://merchant.example/h", "id": f"a{ch}"}, "id"),
        ({"kind": "email", "email": "o@merchant.example", "events": [f"x{ch}"]}, "events.0"),
        ({"kind": "email", "email": "o@merchant.example", "scope": {f"w{ch}": ["*"]}}, "scope"),
    ]


@pytest.mark.parametrize("ch", CONTROLS)
async def test_subscription_bodies_refuse_control_characters(
    fake_redis: Any, key_prefix: str, ch: str
) -> None:
    async with ops_app(fake_redis, key_prefix) as c:
        for body, field in sub_bodies(ch):
            r = await c.client.post("/v1/subscriptions", json=body, headers=ADMIN)
            err = assert_error(r, 422, "invalid", field)
            assert f"U+{ord(ch):04X}" in err["message"], err
            assert ch not in r.text
        r = await c.client.get("/v1/subscriptions", headers=ADMIN)
        assert r.json() == {"subscriptions": []}


BAD_JSON = [b"{bad", b'{"after_seq": 1\xff}', b"\xff\xfe", b'{"kind": "email"']
NOT_OBJECTS = [b"[]", b"[1, 2]", b'"text"', b"1", b"null", b"true"]


async def test_subscription_bodies_are_read_like_the_ops_bodies(
    fake_redis: Any, key_prefix: str
) -> None:
    async with ops_app(fake_redis, key_prefix) as c:
        r = await c.client.post(
            "/v1/subscriptions",
            json={"kind": "webhook", "url": "https://merchant.example/h", "id": "acme"},
            headers=ADMIN,
        )
        assert r.status_code == 201, r.text
        created = r.json()
        routes: list[tuple[str, dict[str, Any] | None]] = [  # with a valid body if required
            ("/v1/subscriptions", {"kind": "email", "email": "o@merchant.example"}),
            ("/v1/subscriptions/acme/replay", {"after_seq": 0}),
            ("/v1/subscriptions/acme/test", None),
            ("/v1/subscriptions/acme/rotate-secret", None),
        ]
        for path, valid in routes:
            for raw in BAD_JSON:
                r = await c.client.post(path, content=raw, headers={**ADMIN, **JSON})
                err = assert_error(r, 422, "invalid", "body")
                assert "not valid JSON" in err["message"], (path, raw, err)
            for raw in NOT_OBJECTS:
                r = await c.client.post(path, content=raw, headers={**ADMIN, **JSON})
                err = assert_error(r, 422, "invalid", "body")
                assert "object" in err["message"], (path, raw, err)
            r = await c.client.post(path, headers=ADMIN)  # no body at all
            if valid is not None:
                assert_error(r, 422, "invalid", "body")
            else:
                assert r.status_code in (200, 202), (path, r.text)
            r = await c.client.post(path, json={**(valid or {}), "colour": "red"}, headers=ADMIN)
            err = assert_error(r, 422, "invalid", "colour")
            assert "unknown field" in err["message"], err
        r = await c.client.post(
            "/v1/subscriptions/acme/replay", json={"after_seq": "x\x1b"}, headers=ADMIN
        )
        assert_error(r, 422, "invalid", "after_seq")
        # an empty object is taken like no body
        for path in ("/v1/subscriptions/acme/test", "/v1/subscriptions/acme/rotate-secret"):
            r = await c.client.post(path, json={}, headers=ADMIN)
            assert r.status_code in (200, 202), (path, r.text)
        r = await c.client.post(
            "/v1/subscriptions/acme/replay", json={"after_seq": 0}, headers=ADMIN
        )
        assert r.status_code == 202, r.text
        r = await c.client.get("/v1/subscriptions", headers=ADMIN)
        assert [s["id"] for s in r.json()["subscriptions"]] == [created["id"]]


async def test_a_bad_body_without_a_token_is_401_first(fake_redis: Any, key_prefix: str) -> None:
    """The token is checked before the body is read, as on the ops routes."""
    async with ops_app(fake_redis, key_prefix) as c:
        for path in ("/v1/subscriptions", "/v1/subscriptions/acme/replay"):
            r = await c.client.post(path, content=b"{bad", headers=JSON)
            assert_error(r, 401, "unauthorized")
            r = await c.client.post(path, content=b"{bad", headers={**OPERATOR, **JSON})
            assert_error(r, 403, "forbidden")
