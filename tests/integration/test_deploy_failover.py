"""The production cluster losing a node under load, and restarted whole: nothing lost,
nothing said twice.

deploy/nats on three nodes, every stream with three copies (declared by the admin),
the three services each as its own NATS user. While the year's invoicing run (45
members) and a booking rush (44 councils for 30 places) flow through the whole
pipeline (commands, outboxes, streams, durables, mail), the node leading the streams
is killed with SIGKILL; the other two elect new leaders and carry on; the node comes
back and catches up. Then all three nodes are stopped and started again, and a
cancellation promotes the head of the waiting list through the restarted cluster.

At the end: 45 invoices numbered 1 to 45, 44 bookings (30 places, 13 waiting, one
cancelled and one promoted), every fact each service committed on its stream exactly
once, every durable consumer caught up, one delivery per fact that asks for one, and
one mail per delivery. The timings are printed (`-s`)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats.errors
import pytest
from nats.aio.client import Client
from sqlalchemy import func, select, text

from contracts import Envelope, Message
from contracts.events_v1 import BookPlace, CancelBooking, PublishEvent
from contracts.money import Money
from contracts.subscriptions_v1 import InvoiceRunStatus, RunInvoicing
from kernel.commands import CommandFailed, ServiceUnavailable, request
from kernel.runtime import Service
from kernel.store import outbox_table
from services.notifications import store as notifications_store
from tests.conftest import Mailbox, eventually
from tests.deploy_support import (
    NODES,
    REPLICAS,
    Cluster,
    connect,
    declare_as_admin,
    running_cluster,
    services_running,
    wait_ready,
)
from tests.events_support import event_command
from vestry.demo import reference_members

MEMBERS = 45
RUSH = 44
PLACES = 30
FACT_STREAMS = ("SUBSCRIPTIONS", "EVENTS", "NOTIFICATIONS")
DURABLES = {
    "EVENTS": {"subscriptions-events", "notifications-events"},
    "SUBSCRIPTIONS": {"events-subscriptions", "notifications-subscriptions"},
}
RETRYABLE = (ServiceUnavailable, nats.errors.Error, TimeoutError)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from running_cluster(tmp_path)


async def ask(nc: Client, command: Message, *, within: float = 60, **done: str) -> dict[str, Any]:
    """``command``, sent again while no replica answers (a node going or coming back);
    a refusal whose code is in ``done`` (the first attempt got through) counts as done."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return await request(nc, command, timeout=3)
        except CommandFailed as refused:
            if refused.error.code in done:
                return {"done": done[refused.error.code]}
            raise
        except RETRYABLE:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def leaders(nc: Client) -> dict[str, str]:
    js = nc.jetstream(timeout=2)
    return {name: (await js.stream_info(name)).cluster.leader or "" for name in FACT_STREAMS}


async def caught_up(nc: Client, services: dict[str, Service]) -> bool:
    """Every outbox published, every durable with nothing pending or unacknowledged, no
    mail owed (due now or waiting to be tried again); False while the cluster cannot say."""
    try:
        for service in services.values():
            async with service.sessions() as session:
                unsent = await session.scalar(
                    select(func.count())
                    .select_from(outbox_table)
                    .where(outbox_table.c.sent_at.is_(None))
                )
                if unsent:
                    return False
        js = nc.jetstream(timeout=2)
        for stream, durables in DURABLES.items():
            consumers = {c.name: c for c in await js.consumers_info(stream)}
            assert set(consumers) == durables, consumers
            if any(c.num_pending or c.num_ack_pending for c in consumers.values()):
                return False
        async with services["notifications"].sessions() as session:
            # Nothing here is deferred on purpose: a delivery whose attempt failed while the
            # cluster was down waits for its next one, and is still owed.
            open_deliveries = await session.scalar(
                select(func.count())
                .select_from(notifications_store.Delivery)
                .where(notifications_store.Delivery.status.in_(notifications_store.OPEN))
            )
            return open_deliveries == 0
    except RETRYABLE:
        return False


async def stream_ids(nc: Client, stream: str) -> Counter[str]:
    """How often each message id (Nats-Msg-Id: the outbox row's id) is on ``stream``."""
    js = nc.jetstream(timeout=5)
    info = await js.stream_info(stream)
    ids: Counter[str] = Counter()
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(stream, seq=seq)
        ids[(msg.headers or {}).get("Nats-Msg-Id", f"#{seq}")] += 1
    return ids


async def committed_ids(service: Service) -> set[str]:
    """The ids of the facts ``service`` committed for its own stream (not the audit's
    records, which go to OPS)."""
    async with service.sessions() as session:
        return set(
            (
                await session.scalars(
                    select(outbox_table.c.id).where(
                        outbox_table.c.subject.startswith(f"{service.name}.")
                    )
                )
            ).all()
        )


async def rows(service: Service, query: str) -> list[tuple[Any, ...]]:
    async with service.sessions() as session:
        return [tuple(row) for row in await session.execute(text(query))]


async def test_a_killed_leader_and_a_whole_restart_lose_and_repeat_nothing(
    cluster: Cluster, tmp_path: Path, mailbox: Mailbox
) -> None:
    clock: dict[str, float] = {}
    began = time.monotonic()
    await declare_as_admin(cluster)
    async with services_running(
        cluster,
        tmp_path / "services",
        smtp_port=mailbox.port,
        ack_wait_s=5.0,
        # The run in small chunks, ~1.5 s in all, so the kill lands in the middle of it.
        billing={"invoice_run_chunk": 5, "invoice_run_pause_s": 0.15},
    ) as services:
        nc = await connect(cluster, "operator", reconnect=True)
        try:
            # Members, and a free 30-place forum a month away.
            for member in reference_members(datetime(2008, 4, 1).date()):
                await ask(nc, member, conflict="joined")
            assert len(await rows(services["subscriptions"], "select id from members")) == MEMBERS
            starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
            created = await ask(
                nc,
                event_command(
                    title="Resilience forum",
                    capacity=PLACES,
                    starts_at=starts,
                    ends_at=starts + timedelta(hours=3),
                    non_member_price=Money(amount_minor=0),
                ),
            )
            event_id = created["event_id"]
            await ask(nc, PublishEvent(event_id=event_id))

            # Under load: the run and the rush start, then the leading node dies.
            run_id = (await ask(nc, RunInvoicing(year=2008)))["run_id"]

            answered: list[int] = []

            async def book(n: int) -> None:
                await asyncio.sleep(n * 0.05)  # spread over ~2 s, across the kill
                command = BookPlace(
                    event_id=event_id, name=f"Officer {n}", email=f"officer{n}@council{n}.gov.uk"
                )
                await ask(nc, command, duplicate="booked")
                answered.append(n)

            rush = asyncio.gather(*(book(n) for n in range(RUSH)))
            await asyncio.sleep(0.5)
            led = await leaders(nc)
            victim = Counter(led.values()).most_common(1)[0][0]
            assert victim in NODES, led
            cluster.kill(victim)
            killed = time.monotonic()
            issued = len(await rows(services["subscriptions"], "select id from invoices"))
            booked = len(answered)
            assert booked < RUSH and issued < MEMBERS, (booked, issued)  # mid-flow
            await rush
            clock["rush answered after the kill"] = time.monotonic() - killed

            async def new_leaders() -> bool:
                try:
                    now = await leaders(nc)
                except RETRYABLE:
                    return False
                return all(leader and leader != victim for leader in now.values())

            await eventually(new_leaders, timeout=30, interval=0.2, what="new stream leaders")
            clock["new leaders after the kill"] = time.monotonic() - killed
            await eventually(
                lambda: _run_done(nc, run_id), timeout=60, interval=0.2, what="the run done"
            )
            clock["run done after the kill"] = time.monotonic() - killed

            # The node comes back and catches up.
            cluster.launch(victim)
            clock["node back in"] = await asyncio.to_thread(wait_ready, cluster)
            await eventually(
                lambda: caught_up(nc, services), timeout=60, interval=0.2, what="caught up"
            )
            clock["caught up after the kill"] = time.monotonic() - killed

            # The whole cluster stopped and started again.
            restarted = time.monotonic()
            await asyncio.to_thread(cluster.stop)
            cluster.start()
            clock["cluster back"] = await asyncio.to_thread(wait_ready, cluster)
            # A place given up: the head of the waiting list is promoted, through it all.
            confirmed = await rows(
                services["events"],
                f"select reference from bookings where event_id = '{event_id}' "
                "and status = 'confirmed' order by reference limit 1",
            )
            cancelled = await ask(nc, CancelBooking(reference=confirmed[0][0]))
            assert len(cancelled["promoted"]) == 1, cancelled
            await eventually(
                lambda: caught_up(nc, services), timeout=60, interval=0.2, what="caught up"
            )
            clock["caught up after the restart"] = time.monotonic() - restarted

            # The stores: what was asked, once.
            numbers = await rows(
                services["subscriptions"],
                "select number from invoices where kind = 'invoice' order by number",
            )
            assert [n for (n,) in numbers] == list(range(1, MEMBERS + 1))
            statuses = dict(
                await rows(
                    services["events"],
                    f"select status, count(*) from bookings where event_id = '{event_id}' "
                    "group by status",
                )
            )
            assert statuses == {
                "confirmed": PLACES,
                "waitlisted": RUSH - PLACES - 1,
                "cancelled": 1,
            }

            # The streams: every fact each service committed, each exactly once.
            owners = {
                "SUBSCRIPTIONS": "subscriptions",
                "EVENTS": "events",
                "NOTIFICATIONS": "notifications",
            }
            facts: dict[str, Counter[str]] = {}
            for stream, owner in owners.items():
                facts[stream] = await stream_ids(nc, stream)
                twice = [i for i, n in facts[stream].items() if n > 1]
                assert not twice, f"{stream}: said twice: {twice}"
                assert set(facts[stream]) == await committed_ids(services[owner]), stream
            subjects = Counter(msg_subject for msg_subject in await _subjects(nc, "SUBSCRIPTIONS"))
            assert subjects["subscriptions.membership.started"] == MEMBERS
            assert subjects["subscriptions.invoice.issued"] == MEMBERS
            assert subjects["subscriptions.invoice_run.completed"] == 1
            js = nc.jetstream(timeout=5)
            for stream in (*FACT_STREAMS, "DLQ"):
                info = await js.stream_info(stream)
                assert info.config.num_replicas == REPLICAS
                assert info.cluster is not None and all(
                    peer.current for peer in info.cluster.replicas or []
                ), (stream, info.cluster)
            assert (await js.stream_info("DLQ")).state.messages == 0  # nothing failed

            # Mail: one delivery per cause and recipient, one mail per delivery.
            async with services["notifications"].sessions() as session:
                deliveries = (
                    await session.execute(
                        select(
                            notifications_store.Delivery.cause_id,
                            notifications_store.Delivery.recipient,
                            notifications_store.Delivery.status,
                        )
                    )
                ).all()
            assert {status for _, _, status in deliveries} == {"sent"}
            per_cause = Counter((cause, to) for cause, to, _ in deliveries)
            assert max(per_cause.values()) == 1
            invoices = await _fact_ids(nc, "SUBSCRIPTIONS", "subscriptions.invoice.issued")
            assert invoices <= {cause for cause, _, _ in deliveries}  # each invoice mailed
            mails = mailbox.mails()
            message_ids = Counter(str(mail.message["Message-ID"]) for mail in mails)
            assert len(mails) == len(deliveries) and max(message_ids.values()) == 1
        finally:
            await nc.close()
    clock["whole test"] = time.monotonic() - began
    print(
        f"\nfailover: killed {victim} (it led {sorted(s for s, n in led.items() if n == victim)}) "
        f"with {issued} of {MEMBERS} invoices issued and {booked} of {RUSH} bookings answered; "
        + "; ".join(f"{what} {seconds:.1f}s" for what, seconds in clock.items())
        + f"; {len(mails)} mails, {sum(sum(c.values()) for c in facts.values())} facts"
    )


async def _run_done(nc: Client, run_id: str) -> bool:
    try:
        record = await request(nc, InvoiceRunStatus(run_id=run_id), timeout=2)
    except RETRYABLE:
        return False
    return record["status"] not in ("queued", "running")


async def _subjects(nc: Client, stream: str) -> list[str]:
    js = nc.jetstream(timeout=5)
    info = await js.stream_info(stream)
    return [
        (await js.get_msg(stream, seq=seq)).subject or ""
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
    ]


async def _fact_ids(nc: Client, stream: str, subject: str) -> set[str]:
    js = nc.jetstream(timeout=5)
    info = await js.stream_info(stream)
    found = set()
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(stream, seq=seq)
        if msg.subject == subject:
            found.add(Envelope.from_bytes(msg.data or b"").id)
    return found
