"""Every file under deploy/ parses and says what docs/deploy.md says it does (fast, no
services). nginx itself runs in test_nginx.py; what cannot run here (docker, a cluster) is
checked for structure, and docs/deploy.md lists the commands run on the rest."""

from __future__ import annotations

import configparser
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
    assert dash["title"] and dash["uid"] == "maintcast"
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    for expr in exprs:
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
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
    assert timeout and int(timeout.group(1)) > 4 * DEFAULT_PING_S, "read timeout too short"
    for directive in (
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header Last-Event-ID $http_last_event_id;",
        "upstream maintcast_api {",
        "keepalive ",
    ):
        assert directive in text, f"missing {directive}"
    assert "http2" in text and "6 connections per origin" in text, "HTTP/2 note missing"
    assert "http_503" not in re.sub(r"#.*", "", text), "a 503 must pass through, not retry"


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
    assert froms and all(a.split()[0] == "python:3.11-slim" for a in froms), froms
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
    ):
        assert script.count(old) == 1, old
        script = script.replace(old, new)
    subprocess.run(["/bin/sh", "-c", script], check=True, timeout=30)
    expected = render_site(
        ["api-1:8000", "api-2:8000"], server_params="max_fails=1 fail_timeout=5s"
    )
    assert out.read_text(encoding="utf-8") == expected


# -- Kubernetes ------------------------------------------------------------------------------


def _k8s_objects() -> list[dict[str, Any]]:
    kust = _yaml_docs(DEPLOY / "k8s" / "kustomization.yaml")[0]
    files = sorted(
        p.name for p in (DEPLOY / "k8s").glob("*.yaml") if p.name != "kustomization.yaml"
    )
    assert sorted(kust["resources"]) == files, "kustomization.yaml must list every manifest"
    objs = [d for f in files for d in _yaml_docs(DEPLOY / "k8s" / f)]
    for o in objs:
        assert o["apiVersion"] and o["metadata"]["name"], o
    return objs


def _by(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def test_k8s_kinds() -> None:
    kinds = sorted(o["kind"] for o in _k8s_objects())
    for kind in ("ConfigMap", "Secret", "Service", "Ingress", "Namespace"):
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
    assert pre_stop[0] == "sleep" and int(pre_stop[1]) >= 5
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
    assert "MAINTCAST_REDIS_URL" in config
    secret = _by(objs, "Secret")["maintcast-tokens"]
    assert "MAINTCAST_TOKENS" in secret["stringData"]
    _known_settings(secret["stringData"], "secret.yaml")
    refs = {e.get("configMapRef", e.get("secretRef", {}))["name"] for e in api_c["envFrom"]}
    assert refs == {"maintcast", "maintcast-tokens"}

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


# -- systemd ---------------------------------------------------------------------------------


UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def _parse_unit(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=True, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    return parser


def _check_units_syntax() -> None:
    names = {p.name for p in UNITS}
    assert names == {"maintcast-api@.service", "maintcast-worker.service"}, names
    for path in UNITS:
        unit = _parse_unit(path)
        assert set(unit.sections()) == {"Unit", "Service", "Install"}, path.name
        exec_start = unit["Service"]["ExecStart"].split()
        assert exec_start[0].startswith("/") and exec_start[0].endswith("/maintcast")
        role = "api" if path.name.startswith("maintcast-api") else "worker"
        assert exec_start[1] == role, path.name
        assert unit["Service"]["User"] not in ("root", "0"), path.name
        assert unit["Service"]["Restart"] in ("always", "on-failure"), path.name
    api = _parse_unit(DEPLOY / "systemd" / "maintcast-api@.service")
    assert "--port %i" in api["Service"]["ExecStart"], "the instance name is the port"
    env = dict(
        line.split("=", 1)
        for line in (DEPLOY / "systemd" / "maintcast.env").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    _known_settings(env, "maintcast.env")


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
    res = subprocess.run([analyze, "verify", *paths], capture_output=True, text=True, timeout=60)
    # verify exits 0 for unknown keys but names them: any output is a finding
    assert res.returncode == 0 and not res.stderr.strip() and not res.stdout.strip(), (
        f"exit {res.returncode}\n{res.stdout}{res.stderr}"
    )


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
