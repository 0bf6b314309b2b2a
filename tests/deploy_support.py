"""Reading deploy/: the NATS node configs, accounts.conf and the env examples, for the
config checks (tests/unit/test_deploy_config.py) and the live cluster
(tests/integration/test_deploy_cluster.py); and the commands the web service sends."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from contracts.system_v1 import DOORS, SERVICES
from vestry.natsserver import binary

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
NATS_DIR = DEPLOY / "nats"
ENV_DIR = DEPLOY / "env"
SYSTEMD_DIR = DEPLOY / "systemd"
NODES = ("n1", "n2", "n3")
USERS = (*SERVICES, *DOORS, "operator", "sys")


def read_conf(path: Path) -> dict[str, object]:
    """Keys as dotted paths (``cluster.listen``); arrays as lists; comments dropped.

    A small reader for the subset of the nats-server syntax our files use.
    """
    values: dict[str, object] = {}
    blocks: list[str] = []
    array: list[str] | None = None
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if array is not None:
            if line.startswith("]"):
                array = None
            else:
                array.append(line.strip('"'))
            continue
        if line == "}":
            blocks.pop()
            continue
        match = re.fullmatch(r"(\w+)\s*[:=]?\s*(.*)", line)
        assert match, f"{path.name}: cannot read {raw!r}"
        key, value = match.groups()
        dotted = ".".join([*blocks, key])
        if value == "{":
            blocks.append(key)
        elif value == "[":
            array = []
            values[dotted] = array
        else:
            values[dotted] = value.strip('"')
    assert not blocks, f"{path.name}: unbalanced braces"
    return values


def read_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip().strip('"')
    return env


def user_block(name: str) -> str:
    """The text of one user's entry in accounts.conf, comments removed."""
    text = "\n".join(
        line.split("#", 1)[0] for line in (NATS_DIR / "accounts.conf").read_text().splitlines()
    )
    match = re.search(rf"user:\s*{name}\s*\n(.*?)(?=user:|\Z)", text, re.S)
    assert match, f"no user {name} in accounts.conf"
    return match.group(1)


def allowed_subjects(name: str) -> set[str]:
    """The quoted subjects in one user's entry: its publish and subscribe allow lists."""
    return set(re.findall(r'"([^"]+)"', user_block(name)))


def permissions(name: str) -> dict[str, set[str]]:
    """One user's ``publish`` and ``subscribe`` allow lists, apart."""
    block = user_block(name)
    lists = {}
    for kind in ("publish", "subscribe"):
        match = re.search(rf"{kind}:\s*\{{\s*allow:\s*\[(.*?)\]", block, re.S)
        assert match, f"no {kind} allow list for {name}"
        lists[kind] = set(re.findall(r'"([^"]+)"', match.group(1)))
    return lists


def web_commands() -> set[str]:
    """The command subjects the web service sends: each command model a module of
    services/web imports (the pages import what they hand to ``Gateway.ask``)."""
    import importlib
    import pkgutil

    import services.web
    from contracts import REGISTRY

    subjects = {spec.model: spec.subject for spec in REGISTRY.all() if spec.kind == "command"}
    sent = set()
    for module in pkgutil.walk_packages(services.web.__path__, "services.web."):
        if module.name != "services.web.__main__":  # importing it would start the site
            names = vars(importlib.import_module(module.name)).values()
            sent |= {subjects[v] for v in names if isinstance(v, type) and v in subjects}
    return sent


def host_port(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


def node(name: str) -> dict[str, object]:
    return read_conf(NATS_DIR / f"{name}.conf")


def port_of(name: str, key: str) -> int:
    """A node's port for ``listen``, ``http`` or ``cluster.listen``, as configured."""
    return host_port(str(node(name)[key]))[1]


def password(user: str) -> str:
    """The throwaway password dummy_env gives ``user``."""
    return f"p{user}secret"


def dummy_env(route_ports: dict[str, int] | None = None) -> dict[str, str]:
    """Every variable the configs refer to, with throwaway values."""
    ports = route_ports or {name: port_of(name, "cluster.listen") for name in NODES}
    env = {f"VESTRY_NATS_{user.upper()}_PASSWORD": password(user) for user in USERS}
    env["VESTRY_NATS_ROUTE_PASSWORD"] = password("route")
    for name in NODES:
        env[f"VESTRY_NATS_ROUTE_{name.upper()}"] = (
            f"nats-route://route:{password('route')}@127.0.0.1:{ports[name]}"
        )
    return env


def nats_env(env: dict[str, str]) -> dict[str, str]:
    """The environment a nats-server child gets: PATH and ``env``, nothing else."""
    return {"PATH": os.environ.get("PATH", ""), **env}


def nats_test(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary()), "-t", "-c", str(config)],
        env=nats_env(env),
        capture_output=True,
        text=True,
        timeout=30,
    )
