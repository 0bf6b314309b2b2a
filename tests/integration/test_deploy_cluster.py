"""deploy/ on a live three-node JetStream cluster on loopback: the node configs as they
are (ports and store dirs moved), the users and bcrypt hashes of accounts.conf and
passwords.conf.example, and streams declared the way the services and the admin
declare them (kernel.streams, deploy/declare_streams.py; three replicas).

Each user logs in with its own password only. Each service user creates its own stream
and the DLQ if they are missing and never changes one, publishes its own facts and dead
letters and nobody else's, and reads another owner's stream only through its own
durable. The admin declares every stream; OPS is append-only. The web user sends the
commands the site's pages send and answers its health, and nothing else. Then each
service's real start-up (migrations, streams, durables) runs as its own user.

The attacks on these permissions are tests/integration/test_deploy_permissions.py; the
cluster losing and regaining nodes under load is test_deploy_failover.py.

Every wait is bounded and says what it was waiting for. The cluster counts as up only
once every node reports the same meta leader with both followers current; after that,
what is left to wait for is a new stream's or consumer's interest reaching the node a
client happens to be connected to (a publish or pull answered "no responders"), and a
three-replica stream's create that the busy young cluster refused placement or left
unanswered (tried again, unless the server reported a permissions violation).
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from collections.abc import Iterator
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.msg import Msg
from nats.js.errors import BadRequestError, NotFoundError

from contracts import Envelope
from contracts.system_v1 import SERVICES, health_subject
from kernel import audit, audit_log
from kernel.personal import KEYS_STREAM
from kernel.runtime import Service
from kernel.settings import Settings
from kernel.streams import (
    DLQ_STREAM,
    PEOPLE_STREAM,
    STREAMS,
    ConsumerSpec,
    ensure_consumer,
    ensure_streams,
    streams_of,
)
from tests.conftest import eventually
from tests.deploy_support import (
    NOT_THERE_YET,
    PEER_OFFLINE,
    REPLICAS,
    USERS,
    Cluster,
    ClusterBusy,
    ask,
    connect,
    connected,
    consumer_info,
    create_request,
    declare,
    declare_as_admin,
    denials,
    example_password,
    fail_if_refused,
    publish,
    refused,
    running_cluster,
    settled,
    stream_info,
    web_commands,
)
from vestry.ops import OPS_STREAM


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from running_cluster(tmp_path)


START_SERVICE_S = 40.0  # one service's start-up: migrations, streams, durables
START_ORDER = ["notifications", "events", "subscriptions"]  # consumers before owners


# Logging in


async def test_each_user_logs_in_with_its_own_password_only(cluster: Cluster) -> None:
    """bcrypt hashes in passwords.conf: each example password opens its own user and no
    other; no password, or a wrong one, opens nothing."""
    for user in USERS[:-1]:
        client = await connect(cluster, user)
        assert client.is_connected
        await client.close()
    sys_client = await nats.connect(
        cluster.urls("sys")[0], connect_timeout=2, allow_reconnect=False
    )
    await sys_client.close()
    attempts = {
        "events as web's password": ("events", example_password("web")),
        "web with no password": ("web", ""),
        "operator with its hash": ("operator", "$2a$11$x"),
        "observer's password as operator": ("operator", example_password("observer")),
    }
    for what, (user, password) in attempts.items():
        url = (
            cluster.urls(user, password)[0]
            if password
            else cluster.urls(user)[0].replace(f":{example_password(user)}@", "@")
        )
        with pytest.raises((nats.errors.Error, OSError)):
            await asyncio.wait_for(
                nats.connect(
                    url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0
                ),
                10,
            )
            pytest.fail(f"{what}: logged in")
    anonymous = f"nats://127.0.0.1:{next(iter(cluster.clients.values()))}"
    with pytest.raises((nats.errors.Error, OSError)):
        await nats.connect(
            anonymous, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0
        )


# bcrypt of "protatedobserver", cost 11 (made with the recipe in deploy/README.md).
ROTATED = "$2a$11$FxL.zM7CG9IxuCMwEGljd.nXDE9mksUXYI5GXPr53Qe.Fuu8xt982"


async def test_a_password_changes_with_a_reload(cluster: Cluster) -> None:
    """deploy/README.md, "Passwords": a new hash in passwords.conf and a reload (SIGHUP)
    of each node; the old password no longer opens the user, the new one does."""
    passwords = cluster.directory / "passwords.conf"
    text = passwords.read_text()
    passwords.write_text(re.sub(r'(?m)^observer_hash: ".*"$', f'observer_hash: "{ROTATED}"', text))
    for process in cluster.processes.values():
        process.send_signal(signal.SIGHUP)

    async def old_refused() -> bool:
        try:
            client = await nats.connect(
                cluster.urls("observer")[0],
                connect_timeout=2,
                allow_reconnect=False,
                max_reconnect_attempts=0,
            )
        except (nats.errors.Error, OSError):  # refused, or the node closed the socket on it
            return True
        await client.close()
        return False

    await eventually(old_refused, timeout=10, interval=0.2, what="the old password refused")
    for url in cluster.urls("observer", "protatedobserver"):  # on every node
        client = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        await client.close()


# Streams


async def test_the_admin_declares_the_streams_and_a_service_may_not_change_them(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    output = await declare_as_admin(cluster)
    assert "OPS: created" in output
    async with connected(cluster, "observer") as observer:
        ojs = observer.jetstream(timeout=5)
        for spec in STREAMS:
            info = await stream_info(ojs, spec.name)
            assert info.config.num_replicas == REPLICAS, spec.name
            assert info.config.duplicate_window == 120
        ops = await stream_info(ojs, OPS_STREAM)
        assert ops.config.num_replicas == REPLICAS
        assert ops.config.deny_delete and ops.config.deny_purge
        # A service finds its stream and the DLQ as it would declare them: nothing to ask.
        errors: list[str] = []
        async with connected(cluster, "events", errors) as events:
            await ensure_streams(
                events.jetstream(timeout=5),
                duplicate_window_s=120,
                replicas=REPLICAS,
                streams=streams_of("events"),
            )
            assert not errors
            # A service whose declaration differs (a new version, say) may not update:
            # the update goes unanswered, is logged, and the stream is kept as it was.
            caplog.set_level(logging.WARNING, logger="kernel.streams")
            await ensure_streams(
                events.jetstream(timeout=1),
                duplicate_window_s=3600,
                replicas=REPLICAS,
                streams=streams_of("events"),
            )
            await denials(errors, ["$JS.API.STREAM.UPDATE.EVENTS", "$JS.API.STREAM.UPDATE.DLQ"])
        assert "stream EVENTS differs from this version's declaration (duplicate_window)" in (
            caplog.text
        )
        for name in ("EVENTS", DLQ_STREAM):
            assert (await stream_info(ojs, name)).config.duplicate_window == 120
        # The admin applies the change; a second run changes nothing.
        await declare_as_admin(cluster, VESTRY_DUPLICATE_WINDOW_S="3600")
        assert (await stream_info(ojs, "EVENTS")).config.duplicate_window == 3600
        again = await declare_as_admin(cluster, VESTRY_DUPLICATE_WINDOW_S="3600")
        assert "created" not in again


async def test_live_cluster_enforces_each_services_subjects(cluster: Cluster) -> None:
    subs_errors: list[str] = []
    events_errors: list[str] = []
    async with AsyncExitStack() as clients:
        subs = await clients.enter_async_context(connected(cluster, "subscriptions", subs_errors))
        events = await clients.enter_async_context(connected(cluster, "events", events_errors))
        observer = await clients.enter_async_context(connected(cluster, "observer"))
        ojs = observer.jetstream(timeout=5)
        assert await settled("streams listed", ojs.streams_info, NOT_THERE_YET) == []

        # The events service creates its own stream, PEOPLE, the DLQ and OPS, as it does
        # at start ...
        ejs = events.jetstream(timeout=5)
        assert [s.name for s in streams_of("events")] == [
            "EVENTS",
            PEOPLE_STREAM,
            DLQ_STREAM,
            OPS_STREAM,
        ]
        await declare(ejs, "events", events_errors)
        # ... and its durable on SUBSCRIPTIONS waits for that stream's owner: the
        # request is allowed and answered "not found", not refused.
        spec = ConsumerSpec(
            "SUBSCRIPTIONS", "events-subscriptions", ("subscriptions.membership.*",)
        )
        with pytest.raises(NotFoundError):
            await ensure_consumer(ejs, spec, ack_wait_s=30)
        # It may not create another owner's stream, nor change or remove any.
        await refused(
            ask(events, "$JS.API.STREAM.CREATE.SUBSCRIPTIONS", create_request("SUBSCRIPTIONS")),
            ask(events, "$JS.API.STREAM.UPDATE.EVENTS", create_request("EVENTS")),
            ask(events, "$JS.API.STREAM.DELETE.DLQ"),
        )
        with pytest.raises(NotFoundError):
            await stream_info(ojs, "SUBSCRIPTIONS")

        # The subscriptions service creates its own stream and finds the DLQ as it
        # would declare it (nothing to update) ...
        sjs = subs.jetstream(timeout=5)
        await declare(sjs, "subscriptions", subs_errors)
        for name in ("SUBSCRIPTIONS", "EVENTS", DLQ_STREAM):
            stream = await stream_info(ojs, name)
            assert stream.config.num_replicas == REPLICAS, name
            assert stream.cluster is not None and len(stream.cluster.replicas or []) == 2, name
        # ... may not update the events stream nor create the notifications one ...
        await refused(
            ask(subs, "$JS.API.STREAM.UPDATE.EVENTS", create_request("EVENTS")),
            ask(subs, "$JS.API.STREAM.CREATE.NOTIFICATIONS", create_request("NOTIFICATIONS")),
        )
        assert (await stream_info(ojs, "EVENTS")).config.num_replicas == REPLICAS
        with pytest.raises(NotFoundError):
            await stream_info(ojs, "NOTIFICATIONS")
        # ... publishes its own fact and its own dead letter ...
        assert (await publish(sjs, "subscriptions.membership.started")).stream == "SUBSCRIPTIONS"
        ack = await publish(sjs, "dlq.subscriptions.subscriptions.membership.started")
        assert ack.stream == DLQ_STREAM
        # ... and nobody else's facts or dead letters, nor its own commands.
        await refused(
            ask(subs, "events.booking.confirmed", b"{}"),
            ask(subs, "dlq.events.x", b"{}"),
            ask(subs, "subscriptions.cmd.join_member", b"{}"),
        )

        # The events service now reads SUBSCRIPTIONS through its own durable.
        await settled(
            "events-subscriptions durable",
            lambda: ensure_consumer(ejs, spec, ack_wait_s=30),
            (*NOT_THERE_YET, NotFoundError),
        )
        pull = await ejs.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
        [msg] = await settled(
            "pull from events-subscriptions", lambda: pull.fetch(1, timeout=2), NOT_THERE_YET
        )
        assert msg.subject == "subscriptions.membership.started"
        await settled("ack", lambda: msg.ack_sync(timeout=2), NOT_THERE_YET)
        consumer = await consumer_info(ejs, spec.stream, spec.durable)
        assert consumer.num_ack_pending == 0 and consumer.num_pending == 0
        # It may not take over a durable that is not its own, nor delete its own.
        other = ConsumerSpec("SUBSCRIPTIONS", "notifications-subscriptions", spec.subjects)
        await refused(
            ensure_consumer(events.jetstream(timeout=0.5), other, ack_wait_s=30),
            ask(events, "$JS.API.CONSUMER.DELETE.SUBSCRIPTIONS.events-subscriptions"),
        )

        # What was refused never reached a stream.
        assert (await stream_info(ojs, "EVENTS")).state.messages == 0
        assert (await stream_info(ojs, "SUBSCRIPTIONS")).state.messages == 1
        assert (await stream_info(ojs, DLQ_STREAM)).state.messages == 1
        await consumer_info(ejs, spec.stream, spec.durable)
        with pytest.raises(NotFoundError):
            await consumer_info(ojs, "SUBSCRIPTIONS", "notifications-subscriptions")
        refusals = [
            "$JS.API.STREAM.CREATE.SUBSCRIPTIONS",
            "$JS.API.STREAM.UPDATE.EVENTS",
            "$JS.API.STREAM.DELETE.DLQ",
            "$JS.API.STREAM.CREATE.NOTIFICATIONS",
            "events.booking.confirmed",
            "dlq.events.x",
            "subscriptions.cmd.join_member",
            "$JS.API.CONSUMER.DURABLE.CREATE.SUBSCRIPTIONS.notifications-subscriptions",
            "$JS.API.CONSUMER.DELETE.SUBSCRIPTIONS.events-subscriptions",
        ]
        errors = subs_errors + events_errors
        denied = await denials(errors, refusals)
        # Each refused once: STREAM.UPDATE.EVENTS by both users.
        assert len(denied) == len(refusals) + 1, errors


async def test_web_user_sends_only_the_site_commands(cluster: Cluster) -> None:
    """Each command the site's pages send is delivered and answered (stand-ins, as each
    service's user, answer for the services), and the web user answers its health
    request; a fact, another command, the JetStream API and listening to other
    commands are refused."""
    web_errors: list[str] = []
    received: set[str] = set()

    async def stand_in(msg: Msg) -> None:
        received.add(msg.subject)
        await msg.respond(msg.subject.encode())

    async def health(msg: Msg) -> None:
        await msg.respond(b"web is up")

    async with AsyncExitStack() as clients:
        for service in SERVICES:
            client = await clients.enter_async_context(connected(cluster, service))
            await client.subscribe(f"{service}.cmd.>", queue=service, cb=stand_in)
            await client.flush()
        observer = await clients.enter_async_context(connected(cluster, "observer"))
        web = await clients.enter_async_context(connected(cluster, "web", web_errors))
        await web.subscribe(health_subject("web"), queue="web", cb=health)
        await web.subscribe("events.cmd.>")  # refused: it would see every booking

        async def send(subject: str) -> bytes:
            ask_once = partial(web.request, subject, b"{}", timeout=2)
            return (await settled(f"web sending {subject}", ask_once, NOT_THERE_YET)).data

        commands = sorted(web_commands())
        assert await asyncio.gather(*map(send, commands)) == [c.encode() for c in commands]
        ask_health = partial(observer.request, health_subject("web"), b"", timeout=2)
        assert (await settled("web health", ask_health, NOT_THERE_YET)).data == b"web is up"
        # A staff account change, recorded in OPS (created here: nobody declared it yet).
        record = Envelope.wrap(
            audit.action_recorded(
                "staff_add", service="web", by=audit.performer(None, "_INBOX_operator.x")
            )
        )
        wjs = web.jetstream(timeout=5)
        await settled(
            "web recording in OPS",
            partial(audit.publish, wjs, [record], duplicate_window_s=120, replicas=REPLICAS),
            (*NOT_THERE_YET, BadRequestError),  # a node counted offline for a moment
        )
        stored = await observer.jetstream(timeout=5).get_last_msg(OPS_STREAM, "ops.action.recorded")
        assert Envelope.from_bytes(stored.data or b"").id == record.id
        # The audit log page reads it back, record by record.
        shown, _ = await audit_log.page_of_records(wjs, limit=5)
        assert [row["id"] for row in shown] == [record.id]

        refusals = [
            "events.booking.confirmed",
            "subscriptions.cmd.reissue_invoice",  # a command no page sends
            "events.cmd.replay",  # the office redrives, but never replays or rebuilds
            "$JS.API.STREAM.INFO.EVENTS",
            "$JS.API.STREAM.MSG.GET.EVENTS",  # OPS is the one stream it reads
            "$JS.API.STREAM.MSG.DELETE.OPS",  # and never changes
            "ops.action.purge",  # the contract's subject only
        ]
        await refused(*(ask(web, subject, b"{}") for subject in refusals))
        assert received == set(commands)  # nothing refused reached a stand-in
        denied = await denials(web_errors, refusals, ["events.cmd.>"])
        assert len(denied) == len(refusals) + 1, web_errors


async def test_each_service_starts_as_its_own_user(
    cluster: Cluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each service's real start-up, as its user: migrate (SQLite here), connect,
    create its own stream and the DLQ with three replicas (the DLQ only once: the
    others find it as they would declare it), declare its durables; the one whose
    stream's owner is not up yet waits; the health report reads every durable.
    Nothing is refused."""
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
            await settled(
                f"{service} starting",
                partial(_prepare, built, caplog),
                (ClusterBusy,),
                within=START_SERVICE_S,
            )
        assert "notifications-subscriptions: stream SUBSCRIPTIONS not there yet" in caplog.text
        assert "updated stream" not in caplog.text
        assert "created stream DLQ" in caplog.text
        async with connected(cluster, "observer") as observer:
            ojs = observer.jetstream(timeout=5)
            names = {s.config.name: s for s in await ojs.streams_info()}
            # Every stream, and the person keys the services' keyrings declare.
            assert set(names) == {spec.name for spec in STREAMS} | {KEYS_STREAM}
            assert all(s.config.num_replicas == REPLICAS for s in names.values())
            # Each durable exists once its stream does: declare again what waited.
            for built in started:
                for consumer in built.consumers:
                    await settled(
                        consumer.spec.durable,
                        consumer.declare,
                        (*NOT_THERE_YET, NotFoundError),
                    )
                report = await asyncio.wait_for(built.health(), 15)
                assert {lag.consumer for lag in report.consumers} == {
                    c.spec.durable for c in built.consumers
                }
                for consumer in built.consumers:
                    await consumer_info(ojs, consumer.spec.stream, consumer.spec.durable)
    finally:
        for built in started:
            await asyncio.wait_for(built.close(), 10)
    assert caplog.text.count("created stream DLQ") == 1
    assert "permissions violation" not in caplog.text.lower(), _log_lines(caplog)


async def _prepare(built: Service, caplog: pytest.LogCaptureFixture) -> None:
    """``built.prepare()``; a stream create refused placement or not answered, without
    a refusal, is ClusterBusy: tried again, as systemd would restart the service."""
    try:
        await built.prepare()
    except (BadRequestError, nats.errors.TimeoutError) as error:
        if isinstance(error, BadRequestError) and error.err_code != PEER_OFFLINE:
            raise
        fail_if_refused(f"{built.name} starting", _log_lines(caplog).splitlines())
        if built.nc is not None:
            await built.nc.close()
        raise ClusterBusy(repr(error)) from error


def _log_lines(caplog: pytest.LogCaptureFixture) -> str:
    """What the services and their NATS clients logged, without the migrations' chatter."""
    return "\n".join(
        f"{r.levelname} {r.name}: {r.getMessage()} {r.exc_info[1] if r.exc_info else ''}"
        for r in caplog.records
        if r.levelno >= logging.WARNING or r.name.startswith(("kernel", "services", "nats"))
    )
