"""Bearer tokens (pure): parsing MAINTCAST_TOKENS / MAINTCAST_TOKENS_FILE, verify, roles."""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

import pytest

from broadcaster.auth import (
    Principal,
    TokenConfigError,
    Tokens,
    digest_of,
    entry_line,
    new_token,
)

OP, AD, VIEWER = "op-secret-1", "admin-secret-2", "file-secret-3"


def test_digest_of_is_lower_case_sha256_hex() -> None:
    d = digest_of("hello")
    assert d == hashlib.sha256(b"hello").hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", d)
    assert digest_of("トークン") == hashlib.sha256("トークン".encode()).hexdigest()


def test_entry_line_and_new_token() -> None:
    assert entry_line("ops", "operator", OP) == f"ops:operator:{digest_of(OP)}"
    a, b = new_token(), new_token()
    assert a != b
    assert len(a) > 40


def test_parse_inline_and_verify() -> None:
    tokens = Tokens.parse(
        f" {entry_line('ops', 'operator', OP)} , {entry_line('boss', 'admin', AD)} ,"
    )
    assert tokens.configured
    assert tokens.verify(OP) == Principal("ops", "operator")
    assert tokens.verify(AD) == Principal("boss", "admin")
    assert tokens.verify("nope") is None
    assert tokens.verify("") is None
    assert tokens.verify(digest_of(OP)) is None  # the digest is not the token


def test_parse_empty_is_unconfigured() -> None:
    for inline in ("", " ", " , ,"):
        tokens = Tokens.parse(inline)
        assert not tokens.configured
        assert tokens.verify(OP) is None


def test_parse_file_with_comments_and_blank_lines(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    f.write_text(
        "# maintcast tokens\n"
        "\n"
        f"{entry_line('viewer', 'operator', VIEWER)}   # the night shift\n"
        "   \n"
        "# boss:admin:deadbeef  (commented out, never parsed)\n"
        f"  {entry_line('boss', 'admin', AD)}\n",
        encoding="utf-8",
    )
    tokens = Tokens.parse("", str(f))
    assert tokens.configured
    assert tokens.verify(VIEWER) == Principal("viewer", "operator")
    assert tokens.verify(AD) == Principal("boss", "admin")
    assert tokens.verify(OP) is None


def test_inline_and_file_both_used(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    f.write_text(entry_line("boss", "admin", AD) + "\n", encoding="utf-8")
    tokens = Tokens.parse(entry_line("ops", "operator", OP), str(f))
    assert tokens.verify(OP) == Principal("ops", "operator")
    assert tokens.verify(AD) == Principal("boss", "admin")


@pytest.mark.parametrize(
    ("inline", "why"),
    [
        ("ops:operator:" + "A" * 64, "upper-case hex"),
        ("ops:operator:" + "g" * 64, "not hex"),
        ("ops:operator:" + "a" * 63, "short digest"),
        ("ops:operator", "missing digest"),
        ("ops:" + digest_of(OP), "missing role"),
        ("just-a-token", "a raw token instead of an entry"),
        ("bad name:operator:" + digest_of(OP), "bad name"),
    ],
)
def test_malformed_inline_entry_names_the_setting(inline: str, why: str) -> None:
    with pytest.raises(TokenConfigError, match="MAINTCAST_TOKENS") as exc:
        Tokens.parse(entry_line("ok", "admin", AD) + "," + inline)
    assert "entry 2" in str(exc.value), why


def test_unknown_role() -> None:
    with pytest.raises(TokenConfigError, match=r"MAINTCAST_TOKENS.*unknown role 'root'"):
        Tokens.parse(f"ops:root:{digest_of(OP)}")


def test_duplicate_name_inline() -> None:
    with pytest.raises(TokenConfigError, match=r"MAINTCAST_TOKENS.*duplicate.*'ops'"):
        Tokens.parse(entry_line("ops", "operator", OP) + "," + entry_line("ops", "admin", AD))


def test_duplicate_name_across_inline_and_file(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    f.write_text(entry_line("ops", "admin", AD) + "\n", encoding="utf-8")
    with pytest.raises(TokenConfigError, match=r"MAINTCAST_TOKENS_FILE.*duplicate.*'ops'"):
        Tokens.parse(entry_line("ops", "operator", OP), str(f))


def test_malformed_file_entry_names_the_file_setting(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    f.write_text(
        "# header\n" + entry_line("ops", "operator", OP) + "\nboss:admin:xyz\n", encoding="utf-8"
    )
    with pytest.raises(TokenConfigError, match="MAINTCAST_TOKENS_FILE") as exc:
        Tokens.parse("", str(f))
    assert str(f) in str(exc.value)
    assert "entry 2" in str(exc.value)


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "tokens"
    with pytest.raises(TokenConfigError, match="MAINTCAST_TOKENS_FILE") as exc:
        Tokens.parse(entry_line("ops", "operator", OP), str(missing))
    assert str(missing) in str(exc.value)
    with pytest.raises(TokenConfigError, match="MAINTCAST_TOKENS_FILE"):
        Tokens.parse("", str(tmp_path))  # a directory is not a readable file


def test_principal_may_orders_roles() -> None:
    op, admin = Principal("ops", "operator"), Principal("boss", "admin")
    assert op.may("operator")
    assert not op.may("admin")
    assert admin.may("operator")
    assert admin.may("admin")


def test_verify_compares_every_entry_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every configured digest is compared with hmac.compare_digest (no early exit)."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return bool(real(a, b))

    monkeypatch.setattr(hmac, "compare_digest", spy)
    tokens = Tokens.parse(
        ",".join(entry_line(f"t{i}", "operator", f"secret-{i}") for i in range(5))
    )
    assert tokens.verify("secret-0") == Principal("t0", "operator")
    assert len(calls) == 5
    calls.clear()
    assert tokens.verify("unknown") is None
    assert len(calls) == 5
