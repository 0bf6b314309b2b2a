"""Broadcasts and resends with two and three notifications replicas on one store (SQLite,
and PostgreSQL where their transactions overlap): the same broadcast sent to every
replica at once is planned once and each subscriber hears once; a failed delivery
resent from every replica at once is put back in line once and goes out once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from nats.aio.client import Client
from sqlalchemy import update

from contracts import Envelope, Message
from contracts.notifications_v1 import (
    AddContact,
    BroadcastCompleted,
    DeliverySent,
    ResendDelivery,
    SendBroadcast,
    ShowContact,
)
from contracts.system_v1 import Reply
from kernel.commands import CommandFailed, request, request_raw
from kernel.runtime import Service
from kernel.settings import Settings
from services.notifications import domain, store
from services.notifications.app import create_service
from tests.conftest import Mailbox, eventually
from tests.events_support import requests_answered
from tests.notifications_support import deliveries, quick, stream_facts
from tests.stack import membership_started

ADVISORY = {
    "reference": "WARP-2026-021",
    "severity": "high",
    "title": "Fake invoices from a compromised supplier mailbox",
    "summary": "Bank details changed in a reply to a real thread.",
    "action": "Confirm any change of bank details by phone.",
}


@pytest.fixture
def store_services() -> tuple[str, ...]:
    """Only the notifications store goes on PostgreSQL in ``store_settings``."""
    return ("notifications",)


@asynccontextmanager
async def replicas(settings: Settings, nc: Client, count: int) -> AsyncIterator[list[Service]]:
    """``count`` notifications services on one store, sending and answering one queue group."""
    async with AsyncExitStack() as stack:
        services = [
            await stack.enter_async_context(create_service(settings).running())
            for _ in range(count)
        ]

        async def all_answered() -> bool:
            with contextlib.suppress(CommandFailed):
                await request(nc, ShowContact(contact="nobody@example.invalid"))
            return all(requests_answered(s, ShowContact.SUBJECT) for s in services)

        await eventually(all_answered, timeout=20, interval=0.01, what="every replica answering")
        yield services


def spread(services: list[Service], subject: str, before: list[int]) -> list[int]:
    return [requests_answered(s, subject) - b for s, b in zip(services, before, strict=True)]


async def send_raw(nc: Client, subject: str, raw: bytes) -> Reply:
    return await request_raw(nc, subject, raw, timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("replica_count", [2, 3])
async def test_one_broadcast_sent_to_every_replica_at_once_is_planned_once(
    store_settings: Settings, nc: Client, mailbox: Mailbox, replica_count: int
) -> None:
    """The same SendBroadcast (one message id: a client retrying) twenty-four times at
    once, over the replicas: every answer names one broadcast of thirty deliveries, and each
    of the thirty subscribers gets one mail."""
    # Two rows at a time per replica, so that every replica sends and records some.
    settings = quick(store_settings, send_concurrency=2)
    async with replicas(settings, nc, replica_count) as services:
        subscribers = [f"officer{n}@council{n}.example.gov.uk" for n in range(30)]
        for email in subscribers:
            await request(nc, AddContact(email=email, name="Officer", topics=["warp"]))
        command = SendBroadcast(
            topic="warp", channels=["email"], template="security_advisory", data=ADVISORY
        )
        raw = Envelope.wrap(command).to_bytes()
        before = spread(services, SendBroadcast.SUBJECT, [0] * replica_count)

        replies = await asyncio.gather(*(send_raw(nc, command.SUBJECT, raw) for _ in range(24)))

        taken = spread(services, SendBroadcast.SUBJECT, before)
        assert sum(taken) == 24 and all(taken), taken  # every replica was sent it
        assert all(reply.ok for reply in replies), [r.error for r in replies if not r.ok]
        answers = {(r.data or {})["broadcast_id"] for r in replies}
        assert len(answers) == 1
        assert {(r.data or {})["planned"] for r in replies} == {30}
        await eventually(lambda: len(mailbox.mails()) >= 30, what="thirty mails")
        completed = await eventually(
            lambda: stream_facts(nc, "NOTIFICATIONS", BroadcastCompleted.SUBJECT), what="completed"
        )
        await asyncio.sleep(0.5)  # time for a second plan's mail, were there one
        rows = [d for d in await deliveries(services[0]) if d.broadcast_id in answers]
        assert sorted(d.recipient for d in rows) == sorted(subscribers)
        assert sorted(m.to for m in mailbox.mails()) == sorted(subscribers)
        assert [c.data["broadcast_id"] for c in completed] == list(answers)


async def failed_delivery(service: Service) -> str:
    """A welcome mail given up after one attempt, as a mail server's 550 leaves it."""
    async with service.sessions() as session, session.begin():
        await store.plan_delivery(session, "cause-resend", domain.welcome(membership_started(7)))
    async with service.sessions() as session, session.begin():
        await session.execute(
            update(store.Delivery)
            .where(store.Delivery.cause_id == "cause-resend")
            .values(status="failed", attempts=1, last_error="550 mailbox unavailable")
        )
    (delivery,) = [d for d in await deliveries(service) if d.cause_id == "cause-resend"]
    return delivery.id


async def attempt(nc: Client, command: Message) -> Reply:
    return await send_raw(nc, command.SUBJECT, Envelope.wrap(command).to_bytes())


@pytest.mark.slow
@pytest.mark.parametrize("replica_count", [2, 3])
async def test_a_failed_delivery_resent_from_every_replica_at_once_goes_out_once(
    store_settings: Settings, nc: Client, mailbox: Mailbox, replica_count: int
) -> None:
    """Twenty-four resends of one failed delivery at once (each its own command), over
    the replicas: one puts it back in line, the others are told it is no longer failed,
    and it is sent once, on its second attempt."""
    async with replicas(quick(store_settings), nc, replica_count) as services:
        for service in services:  # nothing is sent until every resend is answered
            await service.stop_workers()
        delivery_id = await failed_delivery(services[0])
        before = spread(services, ResendDelivery.SUBJECT, [0] * replica_count)

        replies = await asyncio.gather(
            *(attempt(nc, ResendDelivery(delivery_id=delivery_id)) for _ in range(24))
        )

        taken = spread(services, ResendDelivery.SUBJECT, before)
        assert sum(taken) == 24 and all(taken), taken  # every replica was asked
        accepted = [r for r in replies if r.ok]
        refused = [r.error for r in replies if not r.ok]
        assert len(accepted) == 1, replies
        assert {(e.code, e.field) for e in refused if e} == {("conflict", "delivery_id")}
        assert all(e and "this one is pending" in e.message for e in refused), refused

        for service in services:
            await service.start_workers()
        await eventually(lambda: len(mailbox.mails()) >= 1, what="the mail resent")
        await eventually(
            lambda: stream_facts(nc, "NOTIFICATIONS", DeliverySent.SUBJECT), what="sent"
        )
        await asyncio.sleep(0.5)  # time for a second copy, were there one
        (row,) = [d for d in await deliveries(services[0]) if d.id == delivery_id]
        assert (row.status, row.attempts) == ("sent", 2)
        assert [m.to for m in mailbox.mails()] == ["f7@example.gov.uk"]
        sent = await stream_facts(nc, "NOTIFICATIONS", DeliverySent.SUBJECT)
        assert [f.data["delivery_id"] for f in sent] == [delivery_id]
