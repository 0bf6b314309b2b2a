"""deploy/, without servers: the NATS cluster configs parse with the packaged
nats-server (`-t`, test and exit), the nodes are distinct and routed to each other, the
service users' permissions match what the code declares, publishes and consumes, the
web user may send only the commands the site's pages send, the env examples name real
settings, and the systemd units start the right thing.

The live three-node cluster is tests/integration/test_deploy_cluster.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib.util import find_spec
from pathlib import Path

import pytest

from contracts.system_v1 import DOORS, SERVICES, health_subject
from kernel.settings import Settings
from kernel.streams import DLQ_PREFIX, DLQ_STREAM, STREAMS, streams_of
from services.web.settings import WebSettings
from tests.deploy_support import (
    ENV_DIR,
    NATS_DIR,
    NODES,
    SYSTEMD_DIR,
    allowed_subjects,
    dummy_env,
    host_port,
    nats_test,
    node,
    permissions,
    read_env,
    user_block,
    web_commands,
)
from vestry.natsserver import binary

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
    """The streams ``services/<service>/app.py`` registers handlers for."""
    from importlib import import_module

    app = import_module(f"services.{service}.app")
    built = app.create_service(Settings(data_dir=tmp_path))
    return sorted(built._consumed)


def test_every_stream_has_one_owner_that_declares_it() -> None:
    """A consumer waits for its stream's owner: an unowned stream would be waited for forever."""
    declared = {service: [spec.name for spec in streams_of(service)] for service in SERVICES}
    for service, names in declared.items():
        assert names == [service.upper(), DLQ_STREAM], f"{service} declares {names}"
    owners = {
        spec.name: [s for s, names in declared.items() if spec.name in names] for spec in STREAMS
    }
    assert owners.pop(DLQ_STREAM) == list(SERVICES)
    assert all(len(services) == 1 for services in owners.values()), owners


@pytest.mark.parametrize("service", SERVICES)
def test_service_user_allows_exactly_its_own_subjects(service: str, tmp_path: Path) -> None:
    block = user_block(service)
    allowed = allowed_subjects(service)
    owned = {s for spec in STREAMS if spec.name == service.upper() for s in spec.subjects}
    assert owned, f"no stream for {service}"
    facts = {s for spec in STREAMS if spec.name != DLQ_STREAM for s in spec.subjects}
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
    # Streams: info, create and update on exactly the ones it declares (its own and
    # the DLQ, kernel/streams.streams_of), nothing on another owner's.
    stream_api = {s for s in allowed if s.startswith("$JS.API.STREAM.")}
    declares = {
        f"$JS.API.STREAM.{action}.{spec.name}"
        for spec in streams_of(service)
        for action in ("INFO", "CREATE", "UPDATE")
    }
    assert stream_api == declares, f"{service}: {sorted(stream_api ^ declares)}"
    # Consumers: its durable on each stream its handlers consume.
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
    # Nothing else: what is not a fact, a dead letter, a command, an inbox, account
    # info or a stream it declares is one of its durables' consumer API and acks.
    known = owned | declares | {f"{DLQ_PREFIX}.{service}.>", f"{service}.cmd.>", "_INBOX.>"}
    stray = allowed - known - {"$JS.API.INFO"}
    assert all(s.startswith(("$JS.API.CONSUMER.", "$JS.ACK.")) for s in stray), sorted(stray)


def test_web_user_sends_only_the_commands_the_site_sends() -> None:
    """The door owns no stream: the commands its pages send, its health, nothing else."""
    allowed = permissions("web")
    assert allowed["publish"] == web_commands(), sorted(allowed["publish"] ^ web_commands())
    assert {"events.cmd.book", "notifications.cmd.unsubscribe"} <= allowed["publish"]
    assert allowed["subscribe"] == {health_subject("web"), "_INBOX.>"}
    assert "allow_responses: true" in user_block("web")  # its health replies
    every = allowed["publish"] | allowed["subscribe"]
    assert not any(s.startswith("$") or s.startswith(f"{DLQ_PREFIX}.") for s in every)
    assert not any(s.endswith(">") or "*" in s for s in allowed["publish"])


def test_operator_has_broad_rights() -> None:
    block = user_block("operator")
    assert re.search(r'publish:\s*\{\s*allow:\s*\[">"\]', block)
    assert re.search(r'subscribe:\s*\{\s*allow:\s*\[">"\]', block)


# The env examples and the units


@pytest.mark.parametrize("service", SERVICES)
def test_service_env_example(service: str) -> None:
    env = read_env(ENV_DIR / f"{service}.env.example")
    known = {"VESTRY_LOG_LEVEL"} | _setting_names()
    for key in env:
        assert key in known, f"{key} is no setting"
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


def test_web_env_example() -> None:
    env = read_env(ENV_DIR / "web.env.example")
    web_fields = {f"VESTRY_WEB_{field}".upper() for field in WebSettings.model_fields}
    read_by_web = web_fields | {
        "VESTRY_ENV",
        "VESTRY_NATS_URL",
        "VESTRY_PARTNERSHIP_NAME",
        "VESTRY_PUBLIC_URL",
        "VESTRY_LINK_SECRET",
        "VESTRY_UNSUBSCRIBE_SECRET",
    }
    assert read_by_web <= _setting_names()
    # Every setting the site reads, but the port: the unit sets it per replica, and a
    # value in the EnvironmentFile would override the unit's.
    assert set(env) == read_by_web - {"VESTRY_WEB_PORT"}, sorted(set(env) ^ read_by_web)
    urls = env["VESTRY_NATS_URL"].split(",")
    client_ports = {host_port(str(node(name)["listen"]))[1] for name in NODES}
    assert {int(url.rsplit(":", 1)[1]) for url in urls} == client_ports
    nats_env = read_env(ENV_DIR / "nats.env.example")
    for url in urls:
        assert url.startswith(f"nats://web:{nats_env['VESTRY_NATS_WEB_PASSWORD']}@")
    web = WebSettings(
        **{k.removeprefix("VESTRY_WEB_").lower(): v for k, v in env.items() if k in web_fields}
    )
    assert web.secure_cookies and web.host == "127.0.0.1"
    assert web.forwarded_allow_ips == "127.0.0.1"
    assert Settings(
        **{k.removeprefix("VESTRY_").lower(): v for k, v in env.items() if k not in web_fields}
    )
    # It checks the links notifications signs: the same keys in both environments.
    notifications = read_env(ENV_DIR / "notifications.env.example")
    assert {"VESTRY_LINK_SECRET", "VESTRY_UNSUBSCRIBE_SECRET"} <= set(notifications)


def _setting_names() -> set[str]:
    """Every variable a service reads: the kernel's settings and each service's own."""
    from services.events.settings import EventsSettings
    from services.subscriptions.settings import BillingSettings

    names = set()
    for model in (Settings, BillingSettings, EventsSettings, WebSettings):
        prefix = model.model_config.get("env_prefix", "")
        names |= {f"{prefix}{field}".upper() for field in model.model_fields}
    return names


def test_every_service_keeps_three_copies_of_its_streams() -> None:
    """One copy per node; the same in every service, as each one declares the DLQ."""
    for service in SERVICES:
        env = read_env(ENV_DIR / f"{service}.env.example")
        assert env.get("VESTRY_STREAM_REPLICAS") == str(len(NODES)), service
        assert Settings(stream_replicas=env["VESTRY_STREAM_REPLICAS"]).stream_replicas == 3


def test_nats_env_example_sets_every_variable_the_configs_use() -> None:
    env = read_env(ENV_DIR / "nats.env.example")
    used = set()
    for path in NATS_DIR.glob("*.conf"):
        used |= set(re.findall(r"\$(VESTRY_\w+)", path.read_text()))
    assert used == set(env)
    result = nats_test(NATS_DIR / "n2.conf", env)
    assert result.returncode == 0, result.stderr


HARDENING = {
    "NoNewPrivileges=true",
    "ProtectSystem=strict",
    "ProtectHome=true",
    "PrivateTmp=true",
    "PrivateDevices=true",
}


@pytest.mark.parametrize("service", (*SERVICES, *DOORS))
def test_service_unit(service: str) -> None:
    text = (SYSTEMD_DIR / f"vestry-{service}@.service").read_text()
    assert f"ExecStart=/opt/vestry/.venv/bin/python -m services.{service}\n" in text
    assert find_spec(f"services.{service}.__main__") is not None, f"no services.{service}"
    assert f"EnvironmentFile=/etc/vestry/{service}.env\n" in text
    assert (ENV_DIR / f"{service}.env.example").exists()
    assert "Restart=always\n" in text
    assert "ExecStartPre" not in text.split("[Service]")[1]
    lines = set(text.splitlines())
    assert lines >= HARDENING, sorted(HARDENING - lines)
    assert "PartOf=vestry.target\n" in text and "WantedBy=vestry.target\n" in text


def test_web_unit_gives_each_replica_its_own_port_on_loopback() -> None:
    text = (SYSTEMD_DIR / "vestry-web@.service").read_text()
    assert "Environment=VESTRY_WEB_PORT=800%i\n" in text
    assert "VESTRY_WEB_PORT" not in read_env(ENV_DIR / "web.env.example")
    assert read_env(ENV_DIR / "web.env.example")["VESTRY_WEB_HOST"] == "127.0.0.1"
    replicas = {WebSettings(port=f"800{i}").port for i in range(1, 10)}
    nats_ports = {port for name in NODES for port in _node_ports(name)}
    assert len(replicas) == 9 and not replicas & nats_ports
    # Not the vestry user: the public door cannot read the services' environment files.
    assert "User=vestry-web\n" in text and "Group=vestry-web\n" in text


def _node_ports(name: str) -> set[int]:
    return {host_port(str(node(name)[key]))[1] for key in ("listen", "http", "cluster.listen")}


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
    instances += [f"vestry-{service}@1.service" for service in (*SERVICES, *DOORS)]
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *[str(tmp_path / i) for i in instances]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, output
