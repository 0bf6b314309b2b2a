"""Reading deploy/ (the NATS node configs, accounts.conf, the password hashes and the env
examples) for the config checks (tests/unit/test_deploy_config.py), and running it: a
three-node cluster from those files on free loopback ports, with bounded client steps,
for the live tests (tests/integration/test_deploy_*.py)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo, PubAck, StreamConfig, StreamInfo
from nats.js.errors import BadRequestError, NoStreamResponseError, ServiceUnavailableError

from contracts.system_v1 import DOORS, SERVICES
from kernel.runtime import Service
from kernel.settings import Settings, inbox_prefix
from kernel.streams import STREAMS, ensure_streams, streams_of
from vestry.natsserver import binary, free_port

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
NATS_DIR = DEPLOY / "nats"
ENV_DIR = DEPLOY / "env"
SYSTEMD_DIR = DEPLOY / "systemd"
NODES = ("n1", "n2", "n3")
OPERATORS = ("operator", "observer")  # the vestry CLI: acting, looking
USERS = (*SERVICES, *DOORS, *OPERATORS, "admin", "sys")  # every NATS user
CLIENTS = (*SERVICES, *DOORS, *OPERATORS, "admin")  # the users an env example logs in as
PASSWORDS_EXAMPLE = NATS_DIR / "passwords.conf.example"


def read_conf(path: Path) -> dict[str, object]:
    """Keys as dotted paths (``cluster.listen``); arrays as lists; comments dropped.

    A small reader for the subset of the nats-server syntax our node files use.
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


def _accounts_text() -> str:
    return "\n".join(
        line.split("#", 1)[0] for line in (NATS_DIR / "accounts.conf").read_text().splitlines()
    )


def user_block(name: str) -> str:
    """The text of one user's entry in accounts.conf, comments removed."""
    match = re.search(rf"user:\s*{name}\s*\n(.*?)(?=user:|\Z)", _accounts_text(), re.S)
    assert match, f"no user {name} in accounts.conf"
    return match.group(1)


def users_in_accounts() -> list[str]:
    return re.findall(r"user:\s*(\w+)", _accounts_text())


def allowed_subjects(name: str) -> set[str]:
    """The subjects one user's entry allows: publish and subscribe allow lists."""
    lists = permissions(name)
    return lists["publish"] | lists["subscribe"]


def permissions(name: str) -> dict[str, set[str]]:
    """One user's ``publish``, ``subscribe`` and ``publish_deny`` lists, apart."""
    block = user_block(name)
    lists = {}
    for kind in ("publish", "subscribe"):
        match = re.search(rf"{kind}:\s*\{{\s*allow:\s*\[(.*?)\]", block, re.S)
        assert match, f"no {kind} allow list for {name}"
        lists[kind] = set(re.findall(r'"([^"]+)"', match.group(1)))
    deny = re.search(r"publish:\s*\{\s*allow:\s*\[.*?\]\s*deny:\s*\[(.*?)\]", block, re.S)
    lists["publish_deny"] = set(re.findall(r'"([^"]+)"', deny.group(1))) if deny else set()
    assert not re.search(r"subscribe:\s*\{[^}]*deny", block), f"{name}: a subscribe deny list"
    return lists


def password_hashes(path: Path = PASSWORDS_EXAMPLE) -> dict[str, str]:
    """``<user>_hash: "…"`` lines of a passwords.conf, by user."""
    found = re.findall(r'(?m)^(\w+)_hash:\s*"([^"]*)"\s*$', path.read_text())
    return dict(found)


def example_password(user: str) -> str:
    """The example password of ``user``: in its env example, hashed in passwords.conf.example."""
    return f"pchangeme{user}"


def web_commands() -> set[str]:
    """The command subjects the web service sends: each command model a module of
    services/web imports (the pages import what they hand to ``Gateway.ask``), and the
    services' health, dead letters and redrive where a module asks every service for
    them (it imports ``health_subject``, ``dead_letters_subject`` or ``redrive_subject``
    with ``SERVICES``: the office's front page and its operations pages)."""
    import importlib
    import pkgutil

    import services.web
    from contracts import REGISTRY
    from contracts.system_v1 import dead_letters_subject, health_subject, redrive_subject

    subjects = {spec.model: spec.subject for spec in REGISTRY.all() if spec.kind == "command"}
    sent = set()
    for module in pkgutil.walk_packages(services.web.__path__, "services.web."):
        if module.name != "services.web.__main__":  # importing it would start the site
            names = vars(importlib.import_module(module.name))
            sent |= {subjects[v] for v in names.values() if isinstance(v, type) and v in subjects}
            for asks_each in (health_subject, dead_letters_subject, redrive_subject):
                if names.get(asks_each.__name__) is asks_each and names.get("SERVICES") is SERVICES:
                    sent |= {asks_each(service) for service in SERVICES}
    return sent


def consumed_streams(service: str, data_dir: Path) -> list[str]:
    """The streams ``services/<service>/app.py`` registers fact handlers for."""
    from importlib import import_module

    app = import_module(f"services.{service}.app")
    return sorted(app.create_service(Settings(data_dir=data_dir))._consumed)


def durables(data_dir: Path) -> dict[str, tuple[str, str]]:
    """Every durable consumer the services declare: name → (owner, stream)."""
    return {
        f"{service}-{stream.lower()}": (service, stream)
        for service in SERVICES
        for stream in consumed_streams(service, data_dir / service)
    }


def host_port(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


def node(name: str) -> dict[str, object]:
    return read_conf(NATS_DIR / f"{name}.conf")


def port_of(name: str, key: str) -> int:
    """A node's port for ``listen``, ``http`` or ``cluster.listen``, as configured."""
    return host_port(str(node(name)[key]))[1]


def dummy_env(
    route_ports: dict[str, int] | None = None, route_password: str = ""
) -> dict[str, str]:
    """Every variable the node configs take from the environment, with throwaway values."""
    ports = route_ports or {name: port_of(name, "cluster.listen") for name in NODES}
    secret = route_password or "proutesecret"
    env = {"VESTRY_NATS_ROUTE_PASSWORD": secret}
    for name in NODES:
        env[f"VESTRY_NATS_ROUTE_{name.upper()}"] = (
            f"nats-route://route:{secret}@127.0.0.1:{ports[name]}"
        )
    return env


def stage(directory: Path, passwords: str | None = None) -> Path:
    """deploy/nats as installed in /etc/vestry/nats: the node configs, accounts.conf and a
    passwords.conf (the example's hashes unless ``passwords`` is given)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in (*NODES, "accounts"):
        shutil.copy(NATS_DIR / f"{name}.conf", directory / f"{name}.conf")
    (directory / "passwords.conf").write_text(
        PASSWORDS_EXAMPLE.read_text() if passwords is None else passwords
    )
    return directory


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


# The live cluster

START_S = 30.0  # nodes up, a meta leader elected and both followers current
SETTLE_S = 10.0  # a new stream's or durable's interest reaching every node
STOP_S = 10.0  # nodes gone after SIGTERM, before SIGKILL
DENIED_S = 0.5  # how long a refused request waits for the answer that never comes
REPLICAS = 3


@dataclass
class Cluster:
    directory: Path
    clients: dict[str, int]
    monitors: dict[str, int]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def urls(self, user: str, password: str | None = None) -> list[str]:
        secret = example_password(user) if password is None else password
        return [f"nats://{user}:{secret}@127.0.0.1:{p}" for p in self.clients.values()]

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(
            f"--- {name}.log\n{(self.directory / f'{name}.log').read_text(errors='replace')[-tail:]}"
            for name in NODES
            if (self.directory / f"{name}.log").exists()
        )

    def configure(self, routes: dict[str, int], moved: dict[int, int]) -> None:
        """The node configs with ports and store dirs moved, and a cluster name and route
        password of their own: test sessions running side by side on this machine share
        its ports, and a route that reached another session's node must be refused
        rather than join the two clusters."""
        stage(self.directory)
        unique = f"t{secrets.token_hex(8)}"
        self.env = nats_env(dummy_env(routes, route_password=unique))
        for name in NODES:
            text = (NATS_DIR / f"{name}.conf").read_text()
            text = re.sub(
                r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{moved[int(m.group(1))]}", text
            )
            text = text.replace(
                f"/var/lib/vestry/nats/{name}", str(self.directory / "store" / name)
            )
            text, renamed = re.subn(r"(?m)^(\s+name:\s*)vestry\s*$", rf"\g<1>vestry-{unique}", text)
            assert renamed == 1, f"{name}.conf: no cluster name to make unique"
            (self.directory / f"{name}.conf").write_text(text)

    def launch(self, name: str) -> None:
        """Start node ``name`` (again), on its own config and store."""
        with (self.directory / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [str(binary()), "-c", str(self.directory / f"{name}.conf")],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def start(self) -> None:
        for name in NODES:
            self.launch(name)

    def kill(self, name: str) -> None:
        """SIGKILL node ``name``: no lame duck, no goodbye to its clients or peers."""
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def exited(self) -> list[str]:
        return [name for name, process in self.processes.items() if process.poll() is not None]

    def stop(self) -> list[str]:
        """SIGTERM every node, SIGKILL what is left after STOP_S; the nodes that needed it."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_S
        killed = []
        for name, process in self.processes.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                killed.append(name)
                process.kill()
                process.wait(timeout=5)
        return killed


class PortTaken(Exception):
    """A node could not listen: a port we picked was taken before it bound it."""


def _moved_ports() -> dict[int, int]:
    """Each configured port (clients, monitoring, routes) → a free one on this machine."""
    moved: dict[int, int] = {}
    for name in NODES:
        for key in ("listen", "http", "cluster.listen"):
            port = free_port()
            while port in moved.values():
                port = free_port()
            moved[port_of(name, key)] = port
    return moved


def get_json(port: int, path: str) -> tuple[int | None, dict[str, object] | str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")[:200]
    except (OSError, ValueError) as error:
        return None, str(error)


def readiness(cluster: Cluster, nodes: tuple[str, ...] = NODES) -> tuple[bool, dict[str, str]]:
    """Ready when every node of ``nodes`` is healthy (/healthz: JetStream up, in contact
    with a meta leader) and names the same meta leader (/jsz), which sees the others
    current. Also what each node says, for the failure message."""
    seen: dict[str, str] = {}
    leaders: set[object] = set()
    followers_current = False
    for name in nodes:
        port = cluster.monitors[name]
        status, health = get_json(port, "/healthz")
        if status != 200:
            seen[name] = f"healthz {status}: {health}"
            continue
        _, jsz = get_json(port, "/jsz")
        meta = jsz.get("meta_cluster") if isinstance(jsz, dict) else None
        if not isinstance(meta, dict):
            seen[name] = f"no meta_cluster in /jsz: {jsz}"
            continue
        leaders.add(meta.get("leader"))
        seen[name] = f"meta leader {meta.get('leader')!r}"
        if meta.get("leader") == name:
            replicas = meta.get("replicas") or []
            current = sorted(r["name"] for r in replicas if r.get("current"))
            seen[name] += f", current followers {current}"
            followers_current = set(nodes) - {name} <= set(current)
    ready = (
        all(s.startswith("meta leader") for s in seen.values())
        and len(leaders) == 1
        and leaders <= set(nodes)
        and followers_current
    )
    return ready, seen


def wait_ready(cluster: Cluster, nodes: tuple[str, ...] = NODES, within: float = START_S) -> float:
    """Wait until ``nodes`` agree on a meta leader; how long that took."""
    started = time.monotonic()
    deadline = started + within
    while True:
        if exited := [name for name in cluster.exited() if name in nodes]:
            logs = cluster.logs()
            if "address already in use" in logs:
                raise PortTaken(logs)
            pytest.fail(f"node(s) {exited} exited while starting:\n{logs}")
        ready, seen = readiness(cluster, nodes)
        if ready:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            pytest.fail(
                f"no meta leader {nodes} agree on after {within:.0f}s: {seen}\n" + cluster.logs()
            )
        time.sleep(0.1)


def running_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """For a test module's ``cluster`` fixture: deploy/nats/n1..n3.conf on free loopback
    ports, each node in its own store dir, once the cluster has a meta leader. Another
    test session may take a port we picked before a node binds it: then the cluster
    starts again on other ports (three tries)."""
    for attempt in range(3):
        moved = _moved_ports()
        directory = tmp_path / f"cluster{attempt}"
        directory.mkdir()
        running = Cluster(
            directory,
            clients={name: moved[port_of(name, "listen")] for name in NODES},
            monitors={name: moved[port_of(name, "http")] for name in NODES},
        )
        try:
            running.configure({n: moved[port_of(n, "cluster.listen")] for n in NODES}, moved)
            running.start()
            wait_ready(running)
        except PortTaken:
            running.stop()
            continue
        except BaseException:
            running.stop()
            raise
        try:
            yield running
        finally:
            if killed := running.stop():
                warnings.warn(
                    f"node(s) {killed} ignored SIGTERM for {STOP_S:.0f}s and were killed",
                    stacklevel=1,
                )
        return
    pytest.fail("three clusters in a row found a port taken:\n" + running.logs())


# Bounded client steps


@asynccontextmanager
async def connected(
    cluster: Cluster,
    user: str,
    errors: list[str] | None = None,
    *,
    inbox: str | None = None,
) -> AsyncIterator[Client]:
    """``user`` connected to all three nodes, its replies under ``inbox`` (by default its
    own, _INBOX_<user>, as every Vestry client takes them)."""
    client = await connect(cluster, user, errors, inbox=inbox)
    try:
        yield client
    finally:
        try:
            await asyncio.wait_for(client.close(), 5)
        except TimeoutError:
            pytest.fail(f"closing {user}'s connection took more than 5 s")


async def connect(
    cluster: Cluster,
    user: str,
    errors: list[str] | None = None,
    *,
    inbox: str | None = None,
    password: str | None = None,
    reconnect: bool = False,
) -> Client:
    """A client of all three nodes that fails within seconds if none answers; with
    ``reconnect``, one that moves to another node when its node goes, as the services'
    and the site's clients do, for as long as it takes.

    (nats.connect with allow_reconnect=False still tries each server of its list up to
    max_reconnect_attempts times, 2 s apart: two minutes by default if none listens.)
    """

    async def on_error(error: Exception) -> None:
        if errors is not None:
            errors.append(str(error))

    urls = cluster.urls(user, password)
    connecting = nats.connect(
        urls,
        name=f"test-{user}",
        error_cb=on_error,
        allow_reconnect=reconnect,
        max_reconnect_attempts=-1 if reconnect else 1,
        reconnect_time_wait=0.2 if reconnect else 0.1,
        connect_timeout=2,
        inbox_prefix=inbox or inbox_prefix(",".join(urls)),
    )
    try:
        return await asyncio.wait_for(connecting, 10)
    except (TimeoutError, nats.errors.Error, OSError) as error:
        pytest.fail(f"{user} could not connect to {cluster.clients}: {error!r}\n{cluster.logs()}")


async def settled(
    what: str,
    attempt: Callable[[], Awaitable[T]],
    retry_on: tuple[type[BaseException], ...],
    within: float = SETTLE_S,
) -> T:
    """``attempt()`` again while it fails with ``retry_on``; all of it, the attempts
    themselves included, within ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last: BaseException | None = None
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            pytest.fail(f"{what}: not done after {within:.0f}s; last {last!r}")
        try:
            return await asyncio.wait_for(attempt(), remaining)
        except retry_on as error:
            last = error
        except TimeoutError as error:
            if isinstance(error, nats.errors.TimeoutError):  # a request's own timeout
                raise
            pytest.fail(f"{what}: not done after {within:.0f}s; last {last!r}")
        await asyncio.sleep(0.1)


# A stream just created, or a durable just created, is served by its leader; until its
# interest reaches the node a client is on, that node answers "no responders" (a publish:
# NoStreamResponseError; a pull: a 503 status, ServiceUnavailableError). A retried
# publish carries the same Nats-Msg-Id, so an attempt that timed out after being stored
# is not stored twice.
NOT_THERE_YET = (
    NoStreamResponseError,
    nats.errors.NoRespondersError,
    ServiceUnavailableError,
    nats.errors.TimeoutError,
)


# A three-replica stream is placed on all three nodes, and its create is answered once
# its own leader is elected. Right after the cluster starts, under load, a create may
# be refused because the meta leader counted a node offline for a moment (this code),
# or go unanswered. Both were seen here (about one run in thirty); a service would exit
# and systemd would start it again. Neither is taken for a refusal unless the server
# reported a permissions violation.
PEER_OFFLINE = 10005


class ClusterBusy(Exception):
    """A stream's create was refused placement, or not answered, without a refusal."""


def fail_if_refused(what: str, errors: list[str]) -> None:
    refused = [e for e in errors if "permissions violation" in e.lower()]
    if refused:
        pytest.fail(f"{what}: refused: {refused}")


async def declare(js: JetStreamContext, service: str, errors: list[str]) -> None:
    """What ``service`` declares at start: its own stream and the DLQ, three replicas."""
    names = [spec.name for spec in streams_of(service)]

    async def attempt() -> None:
        try:
            await ensure_streams(
                js, duplicate_window_s=120, replicas=REPLICAS, streams=streams_of(service)
            )
        except BadRequestError as error:
            if error.err_code != PEER_OFFLINE:
                raise
            raise ClusterBusy(error.description) from error
        except nats.errors.TimeoutError as error:
            fail_if_refused(f"{service} declaring {names}", errors)
            raise ClusterBusy("no answer") from error

    await settled(f"{service} declaring {names}", attempt, (ClusterBusy, ServiceUnavailableError))


async def publish(js: JetStreamContext, subject: str, payload: bytes = b"{}") -> PubAck:
    return await settled(
        f"publish to {subject}",
        lambda: js.publish(subject, payload, timeout=2, headers={"Nats-Msg-Id": subject}),
        NOT_THERE_YET,
    )


async def stream_info(js: JetStreamContext, name: str) -> StreamInfo:
    """A stream's info once the cluster answers for it (a new stream elects its leader first)."""
    return await settled(f"info of {name}", lambda: js.stream_info(name), NOT_THERE_YET)


async def consumer_info(js: JetStreamContext, stream: str, durable: str) -> ConsumerInfo:
    return await settled(
        f"info of {durable}", lambda: js.consumer_info(stream, durable), NOT_THERE_YET
    )


def ask(client: Client, subject: str, payload: bytes = b"") -> Awaitable[object]:
    return client.request(subject, payload, timeout=DENIED_S)


async def refused(*requests: Awaitable[object]) -> None:
    """Requests the server drops for want of permission: no answer, only a timeout.
    Awaited together, so the wait is DENIED_S once, however many there are."""

    async def one(request: Awaitable[object]) -> None:
        with pytest.raises(nats.errors.TimeoutError):
            await request

    await asyncio.gather(*(one(request) for request in requests))


async def denials(
    errors: list[str], publishes: Sequence[str], subscriptions: Sequence[str] = ()
) -> list[str]:
    """The permissions violations reported (they arrive asynchronously): one for each of
    ``publishes`` and ``subscriptions``, at least."""

    def reported() -> list[str]:
        return [e.lower() for e in errors if "permissions violation" in e.lower()]

    def missing(denied: list[str]) -> list[str]:
        wanted = [f'publish to "{s.lower()}"' for s in publishes]
        wanted += [f'subscription to "{s.lower()}"' for s in subscriptions]
        return [w for w in wanted if not any(w in e for e in denied)]

    async def all_reported() -> list[str]:
        denied = reported()
        if gaps := missing(denied):
            raise LookupError(f"not reported as refused: {gaps}; errors: {errors}")
        return denied

    return await settled("permissions violations", all_reported, (LookupError,), within=5)


def create_request(name: str, **changes: object) -> bytes:
    """A request to create (or update) stream ``name`` (one replica), as raw bytes."""
    spec = next(spec for spec in STREAMS if spec.name == name)
    config = StreamConfig(name=spec.name, subjects=list(spec.subjects), num_replicas=1)
    return json.dumps({**config.as_dict(), **changes}).encode()


# The production pieces, run against the cluster


async def declare_as_admin(cluster: Cluster, **env: str) -> str:
    """deploy/declare_streams.py, as the admin runs it at install: its output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(DEPLOY / "declare_streams.py"),
        env={
            "PATH": os.environ.get("PATH", ""),
            "VESTRY_NATS_URL": ",".join(cluster.urls("admin")),
            "VESTRY_STREAM_REPLICAS": str(REPLICAS),
            "VESTRY_DUPLICATE_WINDOW_S": "120",
            **env,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    text = output.decode()
    assert process.returncode == 0, text + cluster.logs()
    return text


def service_settings(cluster: Cluster, service: str, directory: Path, **overrides: Any) -> Settings:
    """A service as deployed (its own user, three copies of its streams), with the short
    timings of a test and no pacing or quiet hours for mail."""
    values: dict[str, Any] = {
        "data_dir": directory / service,
        "nats_url": ",".join(cluster.urls(service)),
        "stream_replicas": REPLICAS,
        "duplicate_window_s": 120,
        "relay_poll_s": 0.1,
        "retry_backoff_s": [0.2, 0.4, 0.8],
        "max_deliver": 3,
        "quiet_hours": "",
        "email_rate_per_s": 1000.0,
        "sms_rate_per_s": 1000.0,
        "delivery_retry_s": [0.1, 0.2, 0.4],
        **overrides,
    }
    return Settings(**values)


@asynccontextmanager
async def services_running(
    cluster: Cluster, directory: Path, *, billing: dict[str, Any] | None = None, **overrides: Any
) -> AsyncIterator[dict[str, Service]]:
    """The three services, each as its own user, in this event loop (streams declared
    first by the admin, so they only find them); ``billing``: the subscriptions
    service's own settings."""
    from services.events.app import create_service as create_events
    from services.notifications.app import create_service as create_notifications
    from services.subscriptions.app import create_service as create_subscriptions
    from tests.subscriptions_helpers import billing_settings

    built = {
        "subscriptions": create_subscriptions(
            service_settings(cluster, "subscriptions", directory, **overrides),
            billing=billing_settings(**(billing or {})),
        ),
        "events": create_events(service_settings(cluster, "events", directory, **overrides)),
        "notifications": create_notifications(
            service_settings(cluster, "notifications", directory, **overrides)
        ),
    }
    async with AsyncExitStack() as stack:
        for service in built.values():
            await stack.enter_async_context(service.running())
        yield built


async def vestry(
    cluster: Cluster, user: str, *args: str, cwd: Path, timeout: float = 60
) -> tuple[int, str, str]:
    """The vestry CLI as ``user`` (its env file's VESTRY_NATS_URL): exit status, out, err.
    Run without blocking this loop, where the services may be answering it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vestry",
        *args,
        env={
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(cwd),
            "COLUMNS": "200",
            "VESTRY_NATS_URL": ",".join(cluster.urls(user)),
        },
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        pytest.fail(f"vestry {' '.join(args)} as {user}: still running after {timeout:.0f}s")
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
