"""Every file under deploy/ parses and says what docs/deploy.md says it does (fast, no
services). nginx itself runs in test_nginx.py; what cannot run here (docker, a cluster) is
checked for structure, and docs/deploy.md lists the commands run on the rest."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from broadcaster.settings import Settings
from tests.nginx_site import SITE, render_site
from tests.support import IN_CI, ROOT

DEPLOY = ROOT / "deploy"
METRICS = (
    "maintcast_sse_clients",
    "maintcast_events_published_total",
    "maintcast_transitions_total",
    "maintcast_publish_lag_seconds",
    "maintcast_slow_clients_dropped_total",
    "maintcast_redis_up",
    "maintcast_status_overdue_seconds",
    "maintcast_gate_unknown_total",
)
SETTINGS = {f"MAINTCAST_{name.upper()}" for name in Settings.model_fields}
DEFAULT_PING_S = Settings.model_fields["ping_s"].default


def _yaml_docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def _known_settings(env: dict[str, Any], where: str) -> None:
    unknown = {k for k in env if k.startswith("MAINTCAST_")} - SETTINGS
    assert not unknown, f"{where}: not settings of broadcaster/settings.py: {sorted(unknown)}"


# -- every YAML, the dashboard --------------------------------------------------------------


YAML_FILES = sorted(p for ext in ("yaml", "yml") for p in DEPLOY.rglob(f"*.{ext}"))


def test_there_are_yaml_files() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in YAML_FILES}
    assert {"compose.yaml", "k8s/kustomization.yaml", "examples/webcollect-2021.yaml"} <= names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_yaml_parses(path: Path) -> None:
    assert _yaml_docs(path), f"{path} holds no document"


def test_grafana_dashboard_references_every_metric() -> None:
    dash = json.loads((DEPLOY / "grafana" / "maintcast.json").read_text(encoding="utf-8"))
    assert dash["title"]
    assert dash["uid"] == "maintcast"
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    for expr in exprs:
        assert expr.count("(") == expr.count(")"), expr
        assert expr.count("{") == expr.count("}"), expr
    text = "\n".join(exprs)
    for name in METRICS:
        assert re.search(rf"\b{name}(_bucket|_sum|_count)?\b", text), f"no panel shows {name}"
    for p in panels:
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]), p["title"]
        assert p["datasource"]["uid"] == "${datasource}", p["title"]


# -- nginx -----------------------------------------------------------------------------------


def test_nginx_site_has_the_sse_settings() -> None:
    text = SITE.read_text(encoding="utf-8")
    stream = re.search(r"location = /v1/stream \{(.*?)\n    \}", text, re.S)
    assert stream, "no `location = /v1/stream` block"
    block = stream.group(1)
    for directive in (
        "proxy_buffering off;",
        "proxy_cache off;",
        "chunked_transfer_encoding on;",
        "gzip off;",
    ):
        assert directive in block, f"/v1/stream lacks {directive}"
    assert "proxy_set_header" not in re.sub(r"#.*", "", block), "it drops server-level ones"
    timeout = re.search(r"proxy_read_timeout (\d+)s;", block)
    assert timeout, "read timeout too short"
    assert int(timeout.group(1)) > 4 * DEFAULT_PING_S, "read timeout too short"
    for directive in (
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header Last-Event-ID $http_last_event_id;",
        "upstream maintcast_api {",
        "keepalive ",
    ):
        assert directive in text, f"missing {directive}"
    assert "http2" in text, "HTTP/2 note missing"
    assert "6 connections per origin" in text, "HTTP/2 note missing"
    assert "http_503" not in re.sub(r"#.*", "", text), "a 503 must pass through, not retry"


def _server_blocks(text: str) -> list[str]:
    """The bodies of the top-level ``server {…}`` blocks (comments dropped)."""
    text = re.sub(r"#.*", "", text)
    blocks, i = [], 0
    while (m := re.compile(r"^server \{", re.M).search(text, i)) is not None:
        depth, j = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        blocks.append(text[m.end() : j - 1])
        i = j
    return blocks


def test_nginx_site_hygiene() -> None:
    """No version disclosed, unknown hosts refused, HSTS over TLS, per-address limits."""
    text = SITE.read_text(encoding="utf-8")
    default, main = _server_blocks(text)
    assert "default_server" in default
    assert re.search(r"^\s*return 444;", default, re.M)
    assert "proxy_pass" not in default
    names = re.findall(r"^\s*server_name ([^;]+);", main, re.M)
    assert names, names
    assert names[0] not in ("_", ""), names
    assert "default_server" not in main, names
    for block in (default, main):
        assert re.search(r"^\s*server_tokens off;", block, re.M)
        assert re.search(r"^\s*client_header_timeout \d+s;", block, re.M)
    assert re.search(r"^\s*client_body_timeout \d+s;", main, re.M)
    assert re.search(
        r"^\s*add_header Strict-Transport-Security \$maintcast_hsts always;", main, re.M
    )
    hsts = re.search(r"map \$scheme \$maintcast_hsts \{(.*?)\}", text, re.S)
    assert hsts, "HSTS must depend on the scheme"
    assert re.search(r'https "max-age=(\d+); includeSubDomains";', hsts.group(1))
    assert re.search(r'default "";', hsts.group(1)), "no HSTS over plain HTTP"
    stream = re.search(r"location = /v1/stream \{(.*?)\}", main, re.S)
    assert stream
    assert "limit_conn maintcast_streams 32;" in stream.group(1)
    assert "limit_req zone=maintcast_stream_opens" in stream.group(1)
    rest = re.search(r"location / \{(.*?)\}", main, re.S)
    assert rest
    assert "limit_req zone=maintcast_requests" in rest.group(1)
    for directive in ("limit_conn_status 429;", "limit_req_status 429;"):
        assert directive in main, directive


# -- Docker ----------------------------------------------------------------------------------


def _dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.strip().startswith("#"))
    )
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_slim_non_root_and_one_image() -> None:
    text = (DEPLOY / "docker" / "Dockerfile").read_text(encoding="utf-8")
    steps = _dockerfile_instructions(text)
    froms = [a for i, a in steps if i == "FROM"]
    assert froms, froms
    assert all(a.split()[0] == "python:3.11-slim" for a in froms), froms
    users = [a for i, a in steps if i == "USER"]
    assert users, "no USER: the image would run as root"
    final_user = users[-1].split(":")[0]
    assert final_user not in ("root", "0"), f"runs as {users[-1]}"
    assert any(i == "RUN" and re.search(r"pip install\b.* \.(\s|$)", a) for i, a in steps)
    assert ("ENTRYPOINT", '["maintcast"]') in steps
    assert "HEALTHCHECK" in text, "the HEALTHCHECK hint is gone"
    # every COPY source from the build context exists (context = repository root)
    for i, a in steps:
        if i == "COPY" and not a.startswith("--from"):
            for src in a.split()[:-1]:
                assert (ROOT / src).exists(), f"COPY {src}: not in the repository"


# -- compose ---------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    docs = _yaml_docs(DEPLOY / "compose.yaml")
    assert len(docs) == 1
    return docs[0]  # type: ignore[no-any-return]


def test_compose_services_and_healthchecks() -> None:
    services = _compose()["services"]
    assert {"redis", "api-1", "api-2", "worker", "nginx"} <= set(services)
    redis_cmd = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_cmd
    for name in ("api-1", "api-2"):
        api = services[name]
        assert api["command"][0] == "api"
        assert "/readyz" in " ".join(api["healthcheck"]["test"]), name
        _known_settings(api["environment"], name)
    worker = services["worker"]
    assert worker["command"] == ["worker"]
    assert worker["deploy"]["replicas"] == 2
    assert worker["healthcheck"]["test"][-3:] == ["maintcast", "worker", "check"]
    for name in ("redis", "nginx"):
        assert services[name]["healthcheck"]["test"], name
    assert "FORWARDED_ALLOW_IPS" not in " ".join(
        str(s.get("environment", {})) for s in services.values()
    ).replace("MAINTCAST_FORWARDED_ALLOW_IPS", ""), "uvicorn's own variable is not read"
    build = services["api-1"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    mounts = [v.split(":")[0] for v in services["nginx"]["volumes"]]
    assert "./nginx/maintcast.conf" in mounts
    for m in mounts:
        assert (DEPLOY / m).exists(), m


def test_compose_renders_the_committed_nginx_file(tmp_path: Path) -> None:
    """Run the nginx service's own shell script (its sed) on the committed file here and
    compare with the rendering test_nginx.py runs in a real nginx."""
    need_sh = shutil.which("sed") is not None and Path("/bin/sh").exists()
    assert need_sh, "sed and /bin/sh are part of every Debian"
    script = _compose()["services"]["nginx"]["command"][2]
    out = tmp_path / "default.conf"
    for old, new in (
        ("/etc/maintcast/maintcast.conf", str(SITE)),
        ("/etc/nginx/conf.d/default.conf", str(out)),
        ("exec nginx -g 'daemon off;'", "true"),
        # compose's own interpolation, SERVER_NAME unset
        ("${SERVER_NAME:-localhost 127.0.0.1}", "localhost 127.0.0.1"),
    ):
        assert script.count(old) == 1, old
        script = script.replace(old, new)
    assert "$" not in script, "compose would interpolate it"
    subprocess.run(["/bin/sh", "-c", script], check=True, timeout=30)
    expected = render_site(
        ["api-1:8000", "api-2:8000"],
        server_params="max_fails=1 fail_timeout=5s",
        server_name="localhost 127.0.0.1",
    )
    assert out.read_text(encoding="utf-8") == expected


def test_compose_redis_has_a_password_and_the_api_trusts_only_nginx() -> None:
    """Redis requires a password that comes from deploy/.env (never a committed literal);
    the APIs believe X-Forwarded-For from nginx's fixed address only."""
    compose = _compose()
    services = compose["services"]
    redis_cmd = services["redis"]["command"]
    required = "${REDIS_PASSWORD:?"
    assert redis_cmd[redis_cmd.index("--requirepass") + 1].startswith(required), redis_cmd
    assert "PONG" in " ".join(services["redis"]["healthcheck"]["test"]), "NOAUTH exits 0 too"
    for name in ("api-1", "api-2", "worker", "seed"):
        env = services[name]["environment"]
        url = env["MAINTCAST_REDIS_URL"]
        assert url.startswith("redis://:" + required), url
        assert url.endswith("@redis:6379/0"), url
        allowed = env["MAINTCAST_FORWARDED_ALLOW_IPS"]
        assert "*" not in allowed, f"{name}: any peer could forge its client address"
        assert allowed == services["nginx"]["networks"]["default"]["ipv4_address"], name
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(allowed) in ipaddress.ip_network(subnet)
    # every ${VAR} the file needs is in the example env file, none with a value but the name
    example = (DEPLOY / "compose.env.example").read_text(encoding="utf-8")
    given = dict(
        ln.split("=", 1) for ln in example.splitlines() if ln.strip() and not ln.startswith("#")
    )
    needed = set(re.findall(r"\$\{([A-Z_]+)", (DEPLOY / "compose.yaml").read_text("utf-8")))
    assert needed <= set(given), needed - set(given)
    assert given["REDIS_PASSWORD"] == ""
    assert given["MAINTCAST_GATE_BYPASS_SECRET"] == ""
    assert "deploy/.env" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()


# -- Kubernetes ------------------------------------------------------------------------------


def _k8s_objects() -> list[dict[str, Any]]:
    kust = _yaml_docs(DEPLOY / "k8s" / "kustomization.yaml")[0]
    files = sorted(
        p.name for p in (DEPLOY / "k8s").glob("*.yaml") if p.name != "kustomization.yaml"
    )
    assert sorted(kust["resources"]) == files, "kustomization.yaml must list every manifest"
    objs = [d for f in files for d in _yaml_docs(DEPLOY / "k8s" / f)]
    for o in objs:
        assert o["apiVersion"], o
        assert o["metadata"]["name"], o
    return objs


def _by(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def test_k8s_kinds() -> None:
    kinds = sorted(o["kind"] for o in _k8s_objects())
    for kind in ("ConfigMap", "Secret", "Service", "Ingress", "Namespace", "NetworkPolicy"):
        assert kind in kinds, kind
    assert kinds.count("Deployment") == 2
    assert kinds.count("PodDisruptionBudget") == 2


def test_k8s_api_worker_and_routing() -> None:
    objs = _k8s_objects()
    deployments = _by(objs, "Deployment")
    api, worker = deployments["maintcast-api"], deployments["maintcast-worker"]
    (api_c,) = api["spec"]["template"]["spec"]["containers"]
    assert api_c["args"][0] == "api"
    assert api_c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api_c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    pre_stop = api_c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert int(pre_stop[1]) >= 5
    grace = api["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > int(pre_stop[1]) + 5, "no time left for the streams to end after preStop"
    (worker_c,) = worker["spec"]["template"]["spec"]["containers"]
    assert worker_c["args"] == ["worker"]
    assert worker_c["readinessProbe"]["exec"]["command"] == ["maintcast", "worker", "check"]
    for d in (api, worker):
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0

    config = _by(objs, "ConfigMap")["maintcast"]["data"]
    _known_settings(config, "configmap.yaml")
    secrets = _by(objs, "Secret")
    secret = secrets["maintcast-tokens"]
    assert "MAINTCAST_TOKENS" in secret["stringData"]
    _known_settings(secret["stringData"], "secret.yaml")
    # the Redis URL carries the password: in a Secret, committed only as an empty placeholder
    assert "MAINTCAST_REDIS_URL" not in config
    assert secrets["maintcast-redis"]["stringData"] == {"MAINTCAST_REDIS_URL": ""}
    for s in secrets.values():
        assert all(v == "" for v in s["stringData"].values()), "no committed secret values"
    refs = {e.get("configMapRef", e.get("secretRef", {}))["name"] for e in api_c["envFrom"]}
    assert refs == {"maintcast", "maintcast-tokens", "maintcast-redis"}
    worker_refs = {
        e.get("configMapRef", e.get("secretRef", {}))["name"] for e in worker_c["envFrom"]
    }
    assert worker_refs == {"maintcast", "maintcast-redis"}
    allowed = config["MAINTCAST_FORWARDED_ALLOW_IPS"]
    assert "*" not in allowed, allowed
    assert ipaddress.ip_network(allowed), allowed
    assert "FORWARDED_ALLOW_IPS" not in config, "uvicorn's own variable is not read"
    for d in (api, worker):
        assert d["spec"]["template"]["spec"]["automountServiceAccountToken"] is False

    pod_labels = api["spec"]["template"]["metadata"]["labels"]
    service = _by(objs, "Service")["maintcast-api"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    for pdb in _by(objs, "PodDisruptionBudget").values():
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(
            selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
            for d in deployments.values()
        ), pdb["metadata"]["name"]

    ingresses = _by(objs, "Ingress")
    stream = [
        i
        for i in ingresses.values()
        if any(p["path"] == "/v1/stream" for r in i["spec"]["rules"] for p in r["http"]["paths"])
    ]
    assert len(stream) == 1
    notes = stream[0]["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > 4 * DEFAULT_PING_S
    for i in ingresses.values():
        for r in i["spec"]["rules"]:
            for p in r["http"]["paths"]:
                assert p["backend"]["service"]["name"] == "maintcast-api"


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions with In) selects ``labels``."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for e in selector.get("matchExpressions", []):
        assert e["operator"] == "In", e
        if labels.get(e["key"]) not in e["values"]:
            return False
    return True


def test_k8s_network_policies() -> None:
    """Default deny; the API only from the ingress controller; Redis only from the API and
    the worker; the worker from nobody; the ingress limits per client address."""
    objs = _k8s_objects()
    policies = _by(objs, "NetworkPolicy")
    pods = {
        name: d["spec"]["template"]["metadata"]["labels"]
        for name, d in _by(objs, "Deployment").items()
    }
    redis_pod = {"app.kubernetes.io/name": "redis"}
    everyone = [*pods.values(), redis_pod, {"app.kubernetes.io/name": "other"}]

    def peers_of(labels: dict[str, str]) -> list[dict[str, Any]]:
        """Every ``from`` peer allowed to reach pods with ``labels``."""
        found = []
        for p in policies.values():
            assert p["spec"]["policyTypes"] == ["Ingress"], p["metadata"]["name"]
            if _selects(p["spec"]["podSelector"], labels):
                found += [peer for rule in p["spec"].get("ingress", []) for peer in rule["from"]]
        return found

    deny = policies["maintcast-default-deny"]["spec"]
    assert deny["podSelector"] == {}
    assert "ingress" not in deny
    api_peers = peers_of(pods["maintcast-api"])
    assert len(api_peers) == 1
    (peer,) = api_peers
    assert peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }
    assert not any(_selects(peer.get("podSelector", {}), labels) for labels in everyone)
    assert peers_of(pods["maintcast-worker"]) == []
    redis_peers = peers_of(redis_pod)
    assert all("namespaceSelector" not in p for p in redis_peers)
    reach_redis = [
        labels
        for labels in everyone
        if any(_selects(p["podSelector"], labels) for p in redis_peers)
    ]
    assert reach_redis == [pods["maintcast-api"], pods["maintcast-worker"]]

    notes = {
        i["metadata"]["name"]: i["metadata"].get("annotations", {})
        for i in _by(objs, "Ingress").values()
    }
    assert notes["maintcast-stream"]["nginx.ingress.kubernetes.io/limit-connections"] == "32"
    for name in ("maintcast-stream", "maintcast"):
        assert int(notes[name]["nginx.ingress.kubernetes.io/limit-rps"]) > 0, name


# -- systemd ---------------------------------------------------------------------------------


UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


REPEATABLE = {"SystemCallFilter"}
"""Keys systemd accumulates over several lines (an allow list, then ``~`` removals)."""
HARDENING = {
    "SystemCallFilter": "@system-service",
    "ProtectProc": "invisible",
    "PrivateUsers": "yes",
    "UMask": "0077",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "CapabilityBoundingSet": "",
}
"""What issue 12 asks of both units (the first ``SystemCallFilter`` line is the allow list)."""
MAX_EXPOSURE = 2.5
"""``systemd-analyze security`` must score each unit below this (0 best, 10 worst)."""


def _parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """``{section: {key: [values in order]}}``; only :data:`REPEATABLE` keys may repeat."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            assert line[1:-1] not in sections, f"{path.name}:{n}: section {line} twice"
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}:{n}: not key=value: {raw!r}"
        assert "=" in line, f"{path.name}:{n}: not key=value: {raw!r}"
        key, value = (s.strip() for s in line.split("=", 1))
        assert key not in current or key in REPEATABLE, f"{path.name}:{n}: {key} twice"
        current.setdefault(key, []).append(value)
    return sections


def _one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    (value,) = unit[section][key]
    return value


def _check_units_syntax() -> None:
    names = {p.name for p in UNITS}
    assert names == {"maintcast-api@.service", "maintcast-worker.service"}, names
    for path in UNITS:
        unit = _parse_unit(path)
        assert set(unit) == {"Unit", "Service", "Install"}, path.name
        exec_start = _one(unit, "Service", "ExecStart").split()
        assert exec_start[0].startswith("/")
        assert exec_start[0].endswith("/maintcast")
        role = "api" if path.name.startswith("maintcast-api") else "worker"
        assert exec_start[1] == role, path.name
        assert _one(unit, "Service", "User") not in ("root", "0"), path.name
        assert _one(unit, "Service", "Restart") in ("always", "on-failure"), path.name
    api = _parse_unit(DEPLOY / "systemd" / "maintcast-api@.service")
    assert "--port %i" in _one(api, "Service", "ExecStart"), "the instance name is the port"
    env = dict(
        line.split("=", 1)
        for line in (DEPLOY / "systemd" / "maintcast.env").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    _known_settings(env, "maintcast.env")


def test_systemd_units_are_hardened() -> None:
    for path in UNITS:
        service = _parse_unit(path)["Service"]
        for key, value in HARDENING.items():
            assert service.get(key, [None])[0] == value, f"{path.name}: {key}={value}"


def _unit_copies(tmp_path: Path) -> list[str]:
    """Copies of the units whose ExecStart names this venv's ``maintcast`` (verify insists
    that the binary exists), the template instantiated as ``maintcast-api@8000``."""
    maintcast = Path(sys.executable).parent / "maintcast"
    assert maintcast.exists(), maintcast
    paths = []
    for path in UNITS:
        text = path.read_text(encoding="utf-8")
        assert text.count("/opt/maintcast/venv/bin/maintcast") == 1, path.name
        name = path.name.replace("@.service", "@8000.service")
        copy = tmp_path / name
        copy.write_text(text.replace("/opt/maintcast/venv/bin/maintcast", str(maintcast)))
        paths.append(str(copy))
    return paths


def test_systemd_units_score_below_2_5(tmp_path: Path) -> None:
    """``systemd-analyze security --offline=true`` on each unit: overall exposure < 2.5."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if IN_CI:  # not a service CI must provide: the directives are checked instead
            test_systemd_units_are_hardened()
            return
        pytest.skip("systemd-analyze not installed; test_systemd_units_are_hardened checks")
    for path in _unit_copies(tmp_path):
        res = subprocess.run(
            [analyze, "security", "--offline=true", "--no-pager", path],
            capture_output=True,
            text=True,
            timeout=60,
        )
        found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", res.stdout)
        assert found, f"exit {res.returncode}\n{res.stdout}{res.stderr}"
        assert float(found.group(1)) < MAX_EXPOSURE, f"{path}: {found.group(1)}\n{res.stdout}"


def test_systemd_units_parse() -> None:
    _check_units_syntax()


def test_systemd_units_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` on copies whose ExecStart names this venv's ``maintcast``
    (verify insists that the binary exists) and whose template is instantiated."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if IN_CI:  # not a service CI must provide: the file syntax is checked instead
            _check_units_syntax()
            return
        pytest.skip("systemd-analyze not installed; test_systemd_units_parse checks syntax")
    paths = _unit_copies(tmp_path)
    res = subprocess.run([analyze, "verify", *paths], capture_output=True, text=True, timeout=60)
    # verify exits 0 for unknown keys but names them: any output is a finding
    assert res.returncode == 0, f"exit {res.returncode}\n{res.stdout}{res.stderr}"
    assert not res.stderr.strip(), f"exit {res.returncode}\n{res.stdout}{res.stderr}"
    assert not res.stdout.strip(), f"exit {res.returncode}\n{res.stdout}{res.stderr}"


def test_dockerignore_keeps_the_context_to_what_the_image_copies() -> None:
    """Dockerfile.dockerignore excludes everything, then lets in what the COPY steps name."""
    ignore = (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    rules = [ln.strip() for ln in ignore.splitlines() if ln.strip() and not ln.startswith("#")]
    assert rules[0] == "**", rules
    allowed = {r[1:] for r in rules if r.startswith("!")}
    steps = _dockerfile_instructions((DEPLOY / "docker" / "Dockerfile").read_text("utf-8"))
    for instr, args in steps:
        if instr == "COPY" and "--from" not in args:
            for src in args.split()[:-1]:
                assert any(src.rstrip("/").startswith(a) for a in allowed), (src, allowed)
