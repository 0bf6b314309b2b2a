"""deploy/ on a live three-node JetStream cluster on loopback: the node configs as they
are (ports and store dirs moved), the users of accounts.conf, and streams declared the
way the services declare them (kernel.streams.streams_of, three replicas).

Each service user declares its own stream and the DLQ and nobody else's, publishes its
own facts and dead letters and nobody else's, and reads another owner's stream only
through its own durable. The web user sends the commands the site's pages send and
answers its health, and nothing else. Then each service's real start-up (migrations,
streams, durables) runs as its own user against the cluster.

Every wait is bounded and says what it was waiting for. The cluster counts as up only
once every node reports the same meta leader with both followers current; after that,
what is left to wait for is a new stream's or consumer's interest reaching the node a
client happens to be connected to (a publish or pull answered "no responders"), and a
three-replica stream's create that the busy young cluster refused placement or left
unanswered (tried again, unless the server reported a permissions violation).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo, PubAck, StreamConfig, StreamInfo
from nats.js.errors import (
    BadRequestError,
    NoStreamResponseError,
    NotFoundError,
    ServiceUnavailableError,
)

from contracts.system_v1 import SERVICES, health_subject
from kernel.runtime import Service
from kernel.settings import Settings
from kernel.streams import (
    DLQ_STREAM,
    STREAMS,
    ConsumerSpec,
    ensure_consumer,
    ensure_streams,
    streams_of,
)
from tests.deploy_support import (
    NATS_DIR,
    NODES,
    dummy_env,
    nats_env,
    password,
    port_of,
    web_commands,
)
from vestry.natsserver import binary, free_port

T = TypeVar("T")

START_S = 30.0  # nodes up, a meta leader elected and both followers current
START_SERVICE_S = 40.0  # one service's start-up: migrations, streams, durables
SETTLE_S = 10.0  # a new stream's or durable's interest reaching every node
STOP_S = 10.0  # nodes gone after SIGTERM, before SIGKILL
DENIED_S = 0.5  # how long a refused request waits for the answer that never comes
REPLICAS = 3
START_ORDER = ["notifications", "events", "subscriptions"]  # consumers before owners


# The cluster


@dataclass
class Cluster:
    directory: Path
    clients: dict[str, int]
    monitors: dict[str, int]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def urls(self, user: str) -> list[str]:
        return [f"nats://{user}:{password(user)}@127.0.0.1:{p}" for p in self.clients.values()]

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(
            f"--- {name}.log\n{(self.directory / f'{name}.log').read_text(errors='replace')[-tail:]}"
            for name in NODES
            if (self.directory / f"{name}.log").exists()
        )

    def start(self, routes: dict[str, int], moved: dict[int, int]) -> None:
        """The node configs with ports and store dirs moved, and a cluster name and route
        password of their own: test sessions running side by side on this machine share
        its ports, and a route that reached another session's node must be refused
        rather than join the two clusters."""
        shutil.copy(NATS_DIR / "accounts.conf", self.directory / "accounts.conf")
        unique = f"t{secrets.token_hex(8)}"
        env = {
            key: value.replace(password("route"), unique)
            for key, value in nats_env(dummy_env(routes)).items()
        }
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
            with (self.directory / f"{name}.log").open("wb") as log:
                self.processes[name] = subprocess.Popen(
                    [str(binary()), "-c", str(self.directory / f"{name}.conf")],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )

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


class _PortTaken(Exception):
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


def _get_json(port: int, path: str) -> tuple[int | None, dict[str, object] | str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")[:200]
    except (OSError, ValueError) as error:
        return None, str(error)


def _readiness(cluster: Cluster) -> tuple[bool, dict[str, str]]:
    """Ready when every node is healthy (/healthz: JetStream up, in contact with a meta
    leader) and names the same meta leader (/jsz), which sees both followers current.
    Also what each node says, for the failure message."""
    seen: dict[str, str] = {}
    leaders: set[object] = set()
    followers_current = False
    for name, port in cluster.monitors.items():
        status, health = _get_json(port, "/healthz")
        if status != 200:
            seen[name] = f"healthz {status}: {health}"
            continue
        _, jsz = _get_json(port, "/jsz")
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
            followers_current = len(current) == len(NODES) - 1
    ready = (
        all(s.startswith("meta leader") for s in seen.values())
        and len(leaders) == 1
        and leaders <= set(NODES)
        and followers_current
    )
    return ready, seen


def _wait_ready(cluster: Cluster) -> None:
    deadline = time.monotonic() + START_S
    while True:
        if exited := cluster.exited():
            logs = cluster.logs()
            if "address already in use" in logs:
                raise _PortTaken(logs)
            pytest.fail(f"node(s) {exited} exited while starting:\n{logs}")
        ready, seen = _readiness(cluster)
        if ready:
            return
        if time.monotonic() > deadline:
            pytest.fail(
                f"no meta leader all three nodes agree on after {START_S:.0f}s: {seen}\n"
                + cluster.logs()
            )
        time.sleep(0.1)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """deploy/nats/n1..n3.conf on free loopback ports, each node in its own store dir,
    once the cluster has a meta leader. Another test session may take a port we picked
    before a node binds it: then the cluster starts again on other ports (three tries)."""
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
            running.start({name: moved[port_of(name, "cluster.listen")] for name in NODES}, moved)
            _wait_ready(running)
        except _PortTaken:
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
async def _connected(
    cluster: Cluster, user: str, errors: list[str] | None = None
) -> AsyncIterator[Client]:
    client = await _connect(cluster, user, errors)
    try:
        yield client
    finally:
        try:
            await asyncio.wait_for(client.close(), 5)
        except TimeoutError:
            pytest.fail(f"closing {user}'s connection took more than 5 s")


async def _connect(cluster: Cluster, user: str, errors: list[str] | None = None) -> Client:
    """A client of all three nodes that fails within seconds if none answers.

    (nats.connect with allow_reconnect=False still tries each server of its list up to
    max_reconnect_attempts times, 2 s apart: two minutes by default if none listens.)
    """

    async def on_error(error: Exception) -> None:
        if errors is not None:
            errors.append(str(error))

    connect = nats.connect(
        cluster.urls(user),
        name=f"test-{user}",
        error_cb=on_error,
        allow_reconnect=False,
        max_reconnect_attempts=1,
        reconnect_time_wait=0.1,
        connect_timeout=2,
    )
    try:
        return await asyncio.wait_for(connect, 10)
    except (TimeoutError, nats.errors.Error, OSError) as error:
        pytest.fail(f"{user} could not connect to {cluster.clients}: {error!r}\n{cluster.logs()}")


async def _settled(
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


class _ClusterBusy(Exception):
    """A stream's create was refused placement, or not answered, without a refusal."""


def _fail_if_refused(what: str, errors: list[str]) -> None:
    refused = [e for e in errors if "permissions violation" in e.lower()]
    if refused:
        pytest.fail(f"{what}: refused: {refused}")


async def _declare(js: JetStreamContext, service: str, errors: list[str]) -> None:
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
            raise _ClusterBusy(error.description) from error
        except nats.errors.TimeoutError as error:
            _fail_if_refused(f"{service} declaring {names}", errors)
            raise _ClusterBusy("no answer") from error

    await _settled(f"{service} declaring {names}", attempt, (_ClusterBusy, ServiceUnavailableError))


async def _publish(js: JetStreamContext, subject: str) -> PubAck:
    return await _settled(
        f"publish to {subject}",
        lambda: js.publish(subject, b"{}", timeout=2, headers={"Nats-Msg-Id": subject}),
        NOT_THERE_YET,
    )


async def _stream_info(js: JetStreamContext, name: str) -> StreamInfo:
    """A stream's info once the cluster answers for it (a new stream elects its leader first)."""
    return await _settled(f"info of {name}", lambda: js.stream_info(name), NOT_THERE_YET)


async def _consumer_info(js: JetStreamContext, stream: str, durable: str) -> ConsumerInfo:
    return await _settled(
        f"info of {durable}", lambda: js.consumer_info(stream, durable), NOT_THERE_YET
    )


def _ask(client: Client, subject: str, payload: bytes = b"") -> Awaitable[object]:
    return client.request(subject, payload, timeout=DENIED_S)


async def _refused(*requests: Awaitable[object]) -> None:
    """Requests the server drops for want of permission: no answer, only a timeout.
    Awaited together, so the wait is DENIED_S once, however many there are."""

    async def refused(request: Awaitable[object]) -> None:
        with pytest.raises(nats.errors.TimeoutError):
            await request

    await asyncio.gather(*(refused(request) for request in requests))


async def _denials(errors: list[str], subjects: list[str]) -> list[str]:
    """The permissions violations reported for ``subjects`` (they arrive asynchronously)."""

    def reported() -> list[str]:
        return [e.lower() for e in errors if "permissions violation" in e.lower()]

    async def all_reported() -> list[str]:
        denied = reported()
        missing = [s for s in subjects if not any(f'publish to "{s.lower()}"' in e for e in denied)]
        if missing:
            raise LookupError(f"not reported as refused: {missing}; errors: {errors}")
        return denied

    return await _settled("permissions violations", all_reported, (LookupError,), within=5)


def _create_request(name: str) -> bytes:
    """A request to create stream ``name`` (one replica), as raw bytes for a refused request."""
    spec = next(spec for spec in STREAMS if spec.name == name)
    config = StreamConfig(name=spec.name, subjects=list(spec.subjects), num_replicas=1)
    return json.dumps(config.as_dict()).encode()


# The tests


async def test_live_cluster_enforces_each_services_subjects(cluster: Cluster) -> None:
    subs_errors: list[str] = []
    events_errors: list[str] = []
    async with AsyncExitStack() as clients:
        subs = await clients.enter_async_context(_connected(cluster, "subscriptions", subs_errors))
        events = await clients.enter_async_context(_connected(cluster, "events", events_errors))
        operator = await clients.enter_async_context(_connected(cluster, "operator"))
        ojs = operator.jetstream(timeout=5)
        info = await _settled("$JS.API.INFO", ojs.account_info, NOT_THERE_YET)
        assert info.streams == 0

        # The events service declares its own stream and the DLQ, as it does at start ...
        ejs = events.jetstream(timeout=5)
        assert [s.name for s in streams_of("events")] == ["EVENTS", DLQ_STREAM]
        await _declare(ejs, "events", events_errors)
        # ... and its durable on SUBSCRIPTIONS waits for that stream's owner: the
        # request is allowed and answered "not found", not refused.
        spec = ConsumerSpec(
            "SUBSCRIPTIONS", "events-subscriptions", ("subscriptions.membership.*",)
        )
        with pytest.raises(NotFoundError):
            await ensure_consumer(ejs, spec, ack_wait_s=30)
        # It may neither create another owner's stream nor read its config.
        await _refused(
            _ask(events, "$JS.API.STREAM.CREATE.SUBSCRIPTIONS", _create_request("SUBSCRIPTIONS")),
            _ask(events, "$JS.API.STREAM.INFO.SUBSCRIPTIONS"),
        )
        with pytest.raises(NotFoundError):
            await _stream_info(ojs, "SUBSCRIPTIONS")

        # The subscriptions service declares its own stream and the DLQ (already there:
        # an update that changes nothing) ...
        sjs = subs.jetstream(timeout=5)
        await _declare(sjs, "subscriptions", subs_errors)
        for name in ("SUBSCRIPTIONS", "EVENTS", DLQ_STREAM):
            stream = await _stream_info(ojs, name)
            assert stream.config.num_replicas == REPLICAS, name
            assert stream.cluster is not None and len(stream.cluster.replicas or []) == 2, name
        # ... may not update the events stream nor create the notifications one ...
        await _refused(
            _ask(subs, "$JS.API.STREAM.UPDATE.EVENTS", _create_request("EVENTS")),
            _ask(subs, "$JS.API.STREAM.CREATE.NOTIFICATIONS", _create_request("NOTIFICATIONS")),
        )
        assert (await _stream_info(ojs, "EVENTS")).config.num_replicas == REPLICAS
        with pytest.raises(NotFoundError):
            await _stream_info(ojs, "NOTIFICATIONS")
        # ... publishes its own fact and its own dead letter ...
        assert (await _publish(sjs, "subscriptions.membership.started")).stream == "SUBSCRIPTIONS"
        ack = await _publish(sjs, "dlq.subscriptions.subscriptions.membership.started")
        assert ack.stream == DLQ_STREAM
        # ... and nobody else's facts or dead letters, nor its own commands.
        await _refused(
            _ask(subs, "events.booking.confirmed", b"{}"),
            _ask(subs, "dlq.events.x", b"{}"),
            _ask(subs, "subscriptions.cmd.join_member", b"{}"),
        )

        # The events service now reads SUBSCRIPTIONS through its own durable.
        await _settled(
            "events-subscriptions durable",
            lambda: ensure_consumer(ejs, spec, ack_wait_s=30),
            (*NOT_THERE_YET, NotFoundError),
        )
        pull = await ejs.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
        [msg] = await _settled(
            "pull from events-subscriptions", lambda: pull.fetch(1, timeout=2), NOT_THERE_YET
        )
        assert msg.subject == "subscriptions.membership.started"
        await _settled("ack", lambda: msg.ack_sync(timeout=2), NOT_THERE_YET)
        consumer = await _consumer_info(ejs, spec.stream, spec.durable)
        assert consumer.num_ack_pending == 0 and consumer.num_pending == 0
        # It may not take over a durable that is not its own, nor delete a stream.
        other = ConsumerSpec("SUBSCRIPTIONS", "notifications-subscriptions", spec.subjects)
        await _refused(
            ensure_consumer(events.jetstream(timeout=DENIED_S), other, ack_wait_s=30),
            _ask(events, "$JS.API.STREAM.DELETE.SUBSCRIPTIONS"),
        )

        # What was refused never reached a stream; the operator sees everything.
        assert (await _stream_info(ojs, "EVENTS")).state.messages == 0
        assert (await _stream_info(ojs, "SUBSCRIPTIONS")).state.messages == 1
        assert (await _stream_info(ojs, DLQ_STREAM)).state.messages == 1
        with pytest.raises(NotFoundError):
            await _consumer_info(ojs, "SUBSCRIPTIONS", "notifications-subscriptions")
        refused = [
            "$JS.API.STREAM.CREATE.SUBSCRIPTIONS",
            "$JS.API.STREAM.INFO.SUBSCRIPTIONS",
            "$JS.API.STREAM.UPDATE.EVENTS",
            "$JS.API.STREAM.CREATE.NOTIFICATIONS",
            "events.booking.confirmed",
            "dlq.events.x",
            "subscriptions.cmd.join_member",
            "$JS.API.CONSUMER.DURABLE.CREATE.SUBSCRIPTIONS.notifications-subscriptions",
            "$JS.API.STREAM.DELETE.SUBSCRIPTIONS",
        ]
        errors = subs_errors + events_errors
        denied = await _denials(errors, refused)
        assert len(denied) == len(refused), errors


async def test_web_user_sends_only_the_site_commands(cluster: Cluster) -> None:
    """Each command the site's pages send is delivered and answered (a stand-in answers
    for the services), and the web user answers its health request; a fact, another
    command, the JetStream API and listening to other commands are refused."""
    web_errors: list[str] = []
    received: set[str] = set()

    async def stand_in(msg: Msg) -> None:
        received.add(msg.subject)
        await msg.respond(msg.subject.encode())

    async def health(msg: Msg) -> None:
        await msg.respond(b"web is up")

    async with AsyncExitStack() as clients:
        operator = await clients.enter_async_context(_connected(cluster, "operator"))
        web = await clients.enter_async_context(_connected(cluster, "web", web_errors))
        for subject in (*(f"{service}.cmd.>" for service in SERVICES), "events.booking.>"):
            await operator.subscribe(subject, cb=stand_in)
        await web.subscribe(health_subject("web"), queue="web", cb=health)
        await web.subscribe("events.cmd.>")  # refused: it would see every booking

        async def send(subject: str) -> bytes:
            ask = partial(web.request, subject, b"{}", timeout=2)
            return (await _settled(f"web sending {subject}", ask, NOT_THERE_YET)).data

        commands = sorted(web_commands())
        assert await asyncio.gather(*map(send, commands)) == [c.encode() for c in commands]
        ask_health = partial(operator.request, health_subject("web"), b"", timeout=2)
        assert (await _settled("web health", ask_health, NOT_THERE_YET)).data == b"web is up"

        refused = [
            "events.booking.confirmed",
            "subscriptions.cmd.run_invoicing",
            "$JS.API.STREAM.INFO.EVENTS",
        ]
        await _refused(*(_ask(web, subject, b"{}") for subject in refused))
        assert received == set(commands)  # nothing refused reached the stand-in
        denied = await _denials(web_errors, refused)
        subscription = 'permissions violation for subscription to "events.cmd.>"'
        assert sum(subscription in e for e in denied) == 1, web_errors
        assert len(denied) == len(refused) + 1, web_errors


async def test_each_service_starts_as_its_own_user(
    cluster: Cluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each service's real start-up, as its user: migrate (SQLite here), connect,
    declare its own stream and the DLQ with three replicas, declare its durables;
    the one whose stream's owner is not up yet waits; the health report reads every
    durable. Nothing is refused."""
    from importlib import import_module

    caplog.set_level(logging.INFO)
    started = []
    try:
        # Consumers first: their streams' owners have not declared them yet.
        for service in sorted(SERVICES, key=START_ORDER.index):
            app = import_module(f"services.{service}.app")
            built = app.create_service(
                Settings(
                    data_dir=tmp_path / service,
                    nats_url=",".join(cluster.urls(service)),
                    stream_replicas=REPLICAS,
                    duplicate_window_s=120,
                )
            )
            started.append(built)
            await _settled(
                f"{service} starting",
                partial(_prepare, built, caplog),
                (_ClusterBusy,),
                within=START_SERVICE_S,
            )
        assert "notifications-subscriptions: stream SUBSCRIPTIONS not there yet" in caplog.text
        async with _connected(cluster, "operator") as operator:
            ojs = operator.jetstream(timeout=5)
            names = {s.config.name: s for s in await ojs.streams_info()}
            assert set(names) == {spec.name for spec in STREAMS}
            assert all(s.config.num_replicas == REPLICAS for s in names.values())
            # Each durable exists once its stream does: declare again what waited.
            for built in started:
                for consumer in built.consumers:
                    await _settled(
                        consumer.spec.durable,
                        consumer.declare,
                        (*NOT_THERE_YET, NotFoundError),
                    )
                report = await asyncio.wait_for(built.health(), 15)
                assert {lag.consumer for lag in report.consumers} == {
                    c.spec.durable for c in built.consumers
                }
                for consumer in built.consumers:
                    await _consumer_info(ojs, consumer.spec.stream, consumer.spec.durable)
    finally:
        for built in started:
            await asyncio.wait_for(built.close(), 10)
    assert "permissions violation" not in caplog.text.lower(), _log_lines(caplog)


async def _prepare(built: Service, caplog: pytest.LogCaptureFixture) -> None:
    """``built.prepare()``; a stream create refused placement or not answered, without
    a refusal, is _ClusterBusy: tried again, as systemd would restart the service."""
    try:
        await built.prepare()
    except (BadRequestError, nats.errors.TimeoutError) as error:
        if isinstance(error, BadRequestError) and error.err_code != PEER_OFFLINE:
            raise
        _fail_if_refused(f"{built.name} starting", _log_lines(caplog).splitlines())
        if built.nc is not None:
            await built.nc.close()
        raise _ClusterBusy(repr(error)) from error


def _log_lines(caplog: pytest.LogCaptureFixture) -> str:
    """What the services and their NATS clients logged, without the migrations' chatter."""
    return "\n".join(
        f"{r.levelname} {r.name}: {r.getMessage()} {r.exc_info[1] if r.exc_info else ''}"
        for r in caplog.records
        if r.levelno >= logging.WARNING or r.name.startswith(("kernel", "services", "nats"))
    )
