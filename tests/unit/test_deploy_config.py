"""deploy/: the NATS cluster configs parse with the packaged nats-server, the nodes are
distinct and routed to each other, the service users' permissions match what the
code subscribes and publishes, the env examples name real settings, and a live
three-node cluster on loopback lets a service publish its own facts and no one else's.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NoStreamResponseError, NotFoundError

from contracts.system_v1 import SERVICES
from kernel.settings import Settings
from kernel.streams import DLQ_PREFIX, STREAMS, ConsumerSpec, ensure_consumer, ensure_streams
from vestry.natsserver import binary, free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NATS_DIR = DEPLOY / "nats"
ENV_DIR = DEPLOY / "env"
SYSTEMD_DIR = DEPLOY / "systemd"
NODES = ("n1", "n2", "n3")
USERS = (*SERVICES, "operator", "sys")


# Reading our own config files (a small reader for the subset of the syntax they use)


def read_conf(path: Path) -> dict[str, object]:
    """Keys as dotted paths (``cluster.listen``); arrays as lists; comments dropped."""
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


def host_port(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


def node(name: str) -> dict[str, object]:
    return read_conf(NATS_DIR / f"{name}.conf")


def dummy_env(route_ports: dict[str, int] | None = None) -> dict[str, str]:
    """Every variable the configs refer to, with throwaway values."""
    ports = route_ports or {name: host_port(str(node(name)["cluster.listen"]))[1] for name in NODES}
    env = {f"VESTRY_NATS_{user.upper()}_PASSWORD": f"p{user}secret" for user in USERS}
    env["VESTRY_NATS_ROUTE_PASSWORD"] = "proutesecret"
    for name in NODES:
        env[f"VESTRY_NATS_ROUTE_{name.upper()}"] = (
            f"nats-route://route:proutesecret@127.0.0.1:{ports[name]}"
        )
    return env


def nats_test(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary()), "-t", "-c", str(config)],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


# The node configs


@pytest.mark.parametrize("name", NODES)
def test_node_config_parses_with_the_packaged_server(name: str) -> None:
    result = nats_test(NATS_DIR / f"{name}.conf", dummy_env())
    assert result.returncode == 0, result.stderr + result.stdout
    assert "is valid" in result.stderr + result.stdout


def test_passwords_come_from_the_environment() -> None:
    env = dummy_env()
    del env["VESTRY_NATS_EVENTS_PASSWORD"]
    result = nats_test(NATS_DIR / "n1.conf", env)
    assert result.returncode != 0
    assert "VESTRY_NATS_EVENTS_PASSWORD" in result.stderr + result.stdout
    text = (NATS_DIR / "accounts.conf").read_text() + "".join(
        (NATS_DIR / f"{name}.conf").read_text() for name in NODES
    )
    assert not re.search(r"password:\s*[^$\s]", text), "a password written into a config file"


def test_nodes_are_distinct_and_alike_where_they_must_be() -> None:
    nodes = {name: node(name) for name in NODES}
    for key in ("server_name", "listen", "http", "cluster.listen", "jetstream.store_dir"):
        values = [str(conf[key]) for conf in nodes.values()]
        assert len(set(values)) == 3, f"{key} repeats: {values}"
    ports = [
        host_port(str(conf[key]))[1]
        for conf in nodes.values()
        for key in ("listen", "http", "cluster.listen")
    ]
    assert len(set(ports)) == 9, f"ports collide: {ports}"
    assert [conf["server_name"] for conf in nodes.values()] == list(NODES)
    for key in ("cluster.name", "jetstream.sync_interval", "include", "cluster.routes"):
        assert len({str(conf[key]) for conf in nodes.values()}) == 1, f"{key} differs"
    assert nodes["n1"]["jetstream.sync_interval"] == "always"
    assert nodes["n1"]["include"] == "./accounts.conf"


def test_each_node_routes_to_the_other_two() -> None:
    env = read_env(ENV_DIR / "nats.env.example")
    cluster_ports = {name: host_port(str(node(name)["cluster.listen"]))[1] for name in NODES}
    for name in NODES:
        routes = node(name)["cluster.routes"]
        assert isinstance(routes, list)
        urls = [env[route.removeprefix("$")] for route in routes]
        ports = {int(url.rsplit(":", 1)[1]) for url in urls}
        others = {cluster_ports[other] for other in NODES if other != name}
        assert others <= ports, f"{name} does not route to {others - ports}"
        assert ports == set(cluster_ports.values())
        for url in urls:
            assert url.startswith("nats-route://route:")
            password = url.split("route:", 2)[2].split("@")[0]
            assert password == env["VESTRY_NATS_ROUTE_PASSWORD"]


# Permissions against what the code does


def _consumed_streams(service: str, tmp_path: Path) -> list[str]:
    from importlib import import_module

    app = import_module(f"services.{service}.app")
    built = app.create_service(Settings(data_dir=tmp_path))
    return sorted(built._consumed)


@pytest.mark.parametrize("service", SERVICES)
def test_service_user_allows_exactly_its_own_subjects(service: str, tmp_path: Path) -> None:
    block = user_block(service)
    allowed = set(re.findall(r'"([^"]+)"', block))
    owned = {s for spec in STREAMS if spec.name == service.upper() for s in spec.subjects}
    assert owned, f"no stream for {service}"
    facts = {s for spec in STREAMS if spec.name != "DLQ" for s in spec.subjects}
    assert allowed & facts == owned, "publishes another owner's facts, or misses its own"
    assert f"{DLQ_PREFIX}.{service}.>" in allowed
    assert not any(
        s.startswith(f"{DLQ_PREFIX}.") and s != f"{DLQ_PREFIX}.{service}.>" for s in allowed
    )
    assert {f"{service}.cmd.>", "_INBOX.>"} <= allowed
    assert not any(s.endswith(".cmd.>") and s != f"{service}.cmd.>" for s in allowed)
    assert "allow_responses: true" in block
    assert ">" not in allowed and "$JS.API.>" not in allowed
    assert not any(re.search(r"\.(DELETE|PURGE)\.", s) for s in allowed)
    for stream in STREAMS:
        for action in ("INFO", "CREATE", "UPDATE"):  # ensure_streams declares all four
            assert f"$JS.API.STREAM.{action}.{stream.name}" in allowed
    for stream in _consumed_streams(service, tmp_path):
        durable = f"{service}-{stream.lower()}"
        for subject in (
            f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
            f"$JS.API.CONSUMER.INFO.{stream}.{durable}",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
            f"$JS.ACK.{stream}.{durable}.>",
        ):
            assert subject in allowed, f"{service} consumes {stream} but may not {subject}"
    durables = [  # durable names are the tokens with a hyphen
        token
        for subject in allowed
        if subject.startswith(("$JS.ACK.", "$JS.API.CONSUMER."))
        for token in subject.split(".")
        if "-" in token
    ]
    assert durables and all(d.startswith(f"{service}-") for d in durables), durables


def test_operator_has_broad_rights() -> None:
    block = user_block("operator")
    assert re.search(r'publish:\s*\{\s*allow:\s*\[">"\]', block)
    assert re.search(r'subscribe:\s*\{\s*allow:\s*\[">"\]', block)


# The env examples and the units


@pytest.mark.parametrize("service", SERVICES)
def test_service_env_example(service: str) -> None:
    env = read_env(ENV_DIR / f"{service}.env.example")
    for key in env:
        field = key.removeprefix("VESTRY_").lower()
        assert key == "VESTRY_LOG_LEVEL" or field in Settings.model_fields, f"{key} is no setting"
    urls = env["VESTRY_NATS_URL"].split(",")
    client_ports = {host_port(str(node(name)["listen"]))[1] for name in NODES}
    assert {int(url.rsplit(":", 1)[1]) for url in urls} == client_ports
    nats_env = read_env(ENV_DIR / "nats.env.example")
    for url in urls:
        assert url.startswith(
            f"nats://{service}:{nats_env[f'VESTRY_NATS_{service.upper()}_PASSWORD']}@"
        )
    assert env[f"VESTRY_{service.upper()}_DB"].startswith("postgresql+asyncpg://")
    assert Settings(
        **{k.removeprefix("VESTRY_").lower(): v for k, v in env.items() if k != "VESTRY_LOG_LEVEL"}
    )
    if service == "notifications":
        assert {"VESTRY_SMTP_HOST", "VESTRY_SMTP_PORT", "VESTRY_MAIL_FROM"} <= set(env)


def test_nats_env_example_sets_every_variable_the_configs_use() -> None:
    env = read_env(ENV_DIR / "nats.env.example")
    used = set()
    for path in NATS_DIR.glob("*.conf"):
        used |= set(re.findall(r"\$(VESTRY_\w+)", path.read_text()))
    assert used == set(env)
    result = nats_test(NATS_DIR / "n2.conf", env)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_service_unit(service: str) -> None:
    text = (SYSTEMD_DIR / f"vestry-{service}@.service").read_text()
    assert f"ExecStart=/opt/vestry/.venv/bin/python -m services.{service}\n" in text
    assert f"EnvironmentFile=/etc/vestry/{service}.env\n" in text
    assert "Restart=always\n" in text
    assert "ExecStartPre" not in text.split("[Service]")[1]


def test_nats_unit() -> None:
    text = (SYSTEMD_DIR / "vestry-nats@.service").read_text()
    assert "ExecStart=/opt/vestry/.venv/bin/nats-server -c /etc/vestry/nats/%i.conf\n" in text
    assert "EnvironmentFile=/etc/vestry/nats.env\n" in text
    assert "StateDirectory=vestry/nats/%i\n" in text
    for name in NODES:  # the unit's state directory is the config's store_dir
        assert node(name)["jetstream.store_dir"] == f"/var/lib/vestry/nats/{name}"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_units_verify(tmp_path: Path) -> None:
    for unit in SYSTEMD_DIR.iterdir():
        text = unit.read_text().replace("/opt/vestry/.venv/bin/", f"{binary().parent}/")
        (tmp_path / unit.name).write_text(text)
    instances = ["vestry-nats@n1.service", "vestry.target"]
    instances += [f"vestry-{service}@1.service" for service in SERVICES]
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *[str(tmp_path / i) for i in instances]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, output


# A live cluster on loopback


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[str, int]]:
    """The three node configs on free loopback ports, each node in its own store dir."""
    moved: dict[int, int] = {}
    for name in NODES:
        conf = node(name)
        for key in ("listen", "http", "cluster.listen"):
            port = free_port()
            while port in moved.values():
                port = free_port()
            moved[host_port(str(conf[key]))[1]] = port
    shutil.copy(NATS_DIR / "accounts.conf", tmp_path / "accounts.conf")
    processes = []
    logs = []
    env = dummy_env(
        {name: moved[host_port(str(node(name)["cluster.listen"]))[1]] for name in NODES}
    )
    try:
        for name in NODES:
            text = (NATS_DIR / f"{name}.conf").read_text()
            text = re.sub(
                r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{moved[int(m.group(1))]}", text
            )
            text = text.replace(f"/var/lib/vestry/nats/{name}", str(tmp_path / "store" / name))
            (tmp_path / f"{name}.conf").write_text(text)
            logs.append(log := (tmp_path / f"{name}.log").open("wb"))
            processes.append(
                subprocess.Popen(
                    [str(binary()), "-c", str(tmp_path / f"{name}.conf")],
                    env={"PATH": os.environ.get("PATH", ""), **env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        ports = {name: moved[host_port(str(node(name)["listen"]))[1]] for name in NODES}
        monitors = [moved[host_port(str(node(name)["http"]))[1]] for name in NODES]
        _wait_healthy(monitors, processes, tmp_path)
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in logs:
            log.close()


def _wait_healthy(
    monitors: list[int], processes: list[subprocess.Popen[bytes]], logs: Path
) -> None:
    """Until every node says JetStream is up and the cluster has a meta leader."""
    import time

    deadline = time.monotonic() + 20
    pending = list(monitors)
    while pending:
        for process in processes:
            if process.poll() is not None:
                pytest.fail(
                    "a node exited:\n"
                    + "\n".join(p.read_text()[-2000:] for p in logs.glob("*.log"))
                )
        port = pending[0]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                if response.status == 200:
                    pending.pop(0)
                    continue
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"cluster not healthy on {port}")
        time.sleep(0.1)


async def _connect(user: str, ports: dict[str, int], errors: list[str] | None = None):
    async def on_error(error: Exception) -> None:
        if errors is not None:
            errors.append(str(error))

    return await nats.connect(
        [f"nats://{user}:p{user}secret@127.0.0.1:{port}" for port in ports.values()],
        error_cb=on_error,
        allow_reconnect=False,
        connect_timeout=2,
    )


async def _publish_once_ready(js: JetStreamContext, subject: str) -> PubAck:
    """Publish, waiting out the moment after a stream is created when its leader, on
    another node, has not yet made its subjects' interest known to this one."""
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        try:
            return await js.publish(subject, b"{}", headers={"Nats-Msg-Id": subject})
        except (nats.errors.NoRespondersError, NoStreamResponseError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_live_cluster_enforces_each_services_subjects(cluster: dict[str, int]) -> None:
    ports = cluster
    errors: list[str] = []
    subs = await _connect("subscriptions", ports, errors)
    events = await _connect("events", ports, errors)
    operator = await _connect("operator", ports)
    try:
        # A service declares the streams (R1 for now: see the README) ...
        js = subs.jetstream(timeout=5)
        await ensure_streams(js, duplicate_window_s=120)
        # ... publishes its own fact ...
        ack = await _publish_once_ready(js, "subscriptions.membership.started")
        assert ack.stream == "SUBSCRIPTIONS"
        # ... and its own dead letters, but not another owner's facts or dead letters.
        ack = await _publish_once_ready(js, "dlq.subscriptions.subscriptions.membership.started")
        assert ack.stream == "DLQ"
        for subject in (
            "events.booking.confirmed",
            "dlq.events.x",
            "subscriptions.cmd.join_member",
        ):
            with pytest.raises(nats.errors.TimeoutError):
                await js.publish(subject, b"{}", timeout=0.5)
        # Another service consumes it through its own durable: create, fetch, ack.
        ejs = events.jetstream(timeout=5)
        spec = ConsumerSpec(
            "SUBSCRIPTIONS", "events-subscriptions", ("subscriptions.membership.*",)
        )
        await ensure_consumer(ejs, spec, ack_wait_s=30)
        pull = await ejs.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
        [msg] = await pull.fetch(1, timeout=5)
        await msg.ack_sync()
        info = await ejs.consumer_info(spec.stream, spec.durable)
        assert info.num_ack_pending == 0 and info.num_pending == 0
        # It may not take over a durable that is not its own, nor delete a stream.
        other = ConsumerSpec("SUBSCRIPTIONS", "notifications-subscriptions", spec.subjects)
        with pytest.raises(asyncio.TimeoutError):
            await ensure_consumer(events.jetstream(timeout=0.5), other, ack_wait_s=30)
        with pytest.raises((asyncio.TimeoutError, nats.errors.TimeoutError)):
            await events.request("$JS.API.STREAM.DELETE.SUBSCRIPTIONS", b"", timeout=0.5)
        # What was denied never reached a stream; the operator sees everything.
        ojs = operator.jetstream(timeout=5)
        assert (await ojs.stream_info("EVENTS")).state.messages == 0
        assert (await ojs.stream_info("SUBSCRIPTIONS")).state.messages == 1
        assert (await ojs.stream_info("DLQ")).state.messages == 1
        with pytest.raises(NotFoundError):
            await ojs.consumer_info("SUBSCRIPTIONS", "notifications-subscriptions")
        await asyncio.sleep(0.1)
        denied = [e.lower() for e in errors if "permissions violation" in e.lower()]
        for subject in (
            "events.booking.confirmed",
            "dlq.events.x",
            "subscriptions.cmd.join_member",
            "$js.api.consumer.durable.create.subscriptions.notifications-subscriptions",
            "$js.api.stream.delete.subscriptions",
        ):
            assert any(f'publish to "{subject}"' in e for e in denied), (subject, errors)
        assert len(denied) == 5, errors
    finally:
        for client in (subs, events, operator):
            await client.close()
