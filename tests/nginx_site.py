"""Rendering ``deploy/nginx/maintcast.conf`` for a given set of API replicas and listen
address: only the lines between its ``# @maintcast:<name>-begin`` / ``-end`` markers are
replaced, the way ``deploy/compose.yaml`` renders it with ``sed``. Used by test_nginx.py
(which runs the result in a real nginx) and test_deploy_files.py."""

from __future__ import annotations

import re

from tests.support import ROOT

SITE = ROOT / "deploy" / "nginx" / "maintcast.conf"


def replace_region(text: str, name: str, lines: list[str]) -> str:
    """``text`` with what lies between the ``name`` markers (markers included) replaced by
    ``lines``, indented like the begin marker; each marker must occur exactly once."""
    begin, end = f"# @maintcast:{name}-begin", f"# @maintcast:{name}-end"
    assert text.count(begin) == 1, (
        f"{SITE} must keep the markers {begin!r} and {end!r} exactly once each"
    )
    assert text.count(end) == 1, (
        f"{SITE} must keep the markers {begin!r} and {end!r} exactly once each"
    )
    pattern = re.compile(rf"^([ \t]*){re.escape(begin)}\n.*?^[ \t]*{re.escape(end)}\n", re.M | re.S)
    m = pattern.search(text)
    assert m, f"{begin} must come before {end} in {SITE}"
    body = "".join(f"{m.group(1)}{line}\n" for line in lines)
    return text[: m.start()] + body + text[m.end() :]


def render_site(
    upstreams: list[str],
    listen: str | None = None,
    replace: dict[str, str] | None = None,
    server_params: str = "max_fails=0",
    server_name: str | None = None,
) -> str:
    """The committed site file with ``upstreams`` (``host:port``) as its servers and, if
    given, ``listen`` as the only listen address of both servers (the default server's as
    ``default_server``) and ``server_name`` as the name the replicas answer; ``replace``
    swaps further exact snippets (each must occur exactly once)."""
    text = SITE.read_text(encoding="utf-8")
    servers = [f"server {u} {server_params};".replace(" ;", ";") for u in upstreams]
    text = replace_region(text, "upstream", servers)
    if listen is not None:
        text = replace_region(text, "listen", [f"listen {listen};"])
        text = replace_region(text, "default-listen", [f"listen {listen} default_server;"])
    if server_name is not None:
        text = replace_region(text, "server-name", [f"server_name {server_name};"])
    for old, new in (replace or {}).items():
        assert text.count(old) == 1, f"{old!r} must occur exactly once in {SITE}"
        text = text.replace(old, new)
    return text
