"""Helpers for tests that drive the services: joining members, counting effects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import date
from typing import Any

from nats.aio.client import Client
from sqlalchemy import Table, func, select

from contracts import Envelope, Message
from contracts.subscriptions_v1 import JoinMember, MembershipStarted
from kernel.commands import request
from kernel.runtime import Service
from kernel.settings import Settings
from kernel.store import inbox_table, outbox_table
from services.events import store as events_store
from services.events.app import create_service as create_events
from services.notifications import store as notifications_store
from services.notifications.app import create_service as create_notifications
from services.subscriptions.app import create_service as create_subscriptions


def membership_started(number: int) -> MembershipStarted:
    """A MembershipStarted fact as subscriptions would publish it for member ``number``."""
    return MembershipStarted(
        membership_id=f"ms-{number}",
        member_id=f"m-{number}",
        member_name=f"Council {number}",
        tier="district",
        billing_email=f"f{number}@example.gov.uk",
        starts_on=date(2026, 4, 1),
    )


async def publish_fact(nc: Client, fact: Message) -> int:
    """Publish ``fact`` to its stream as its owner's relay would; returns its stream sequence."""
    envelope = Envelope.wrap(fact)
    ack = await nc.jetstream().publish(
        fact.SUBJECT, envelope.to_bytes(), headers={"Nats-Msg-Id": envelope.id}
    )
    return ack.seq


def join_command(number: int, tier: str = "district") -> JoinMember:
    return JoinMember(
        name=f"Borough Council {number:05d}",
        tier=tier,
        billing_email=f"finance{number:05d}@council.example.gov.uk",
        joined_on=date(2026, 4, 1),
    )


async def join(nc: Client, number: int) -> dict[str, str]:
    return await request(nc, join_command(number))


@asynccontextmanager
async def stack(settings: Settings) -> AsyncIterator[tuple[Service, Service, Service]]:
    """The three services running in this event loop."""
    async with AsyncExitStack() as services:
        running = [
            await services.enter_async_context(create(settings).running())
            for create in (create_subscriptions, create_events, create_notifications)
        ]
        yield running[0], running[1], running[2]


async def delivery_count(notifications: Service, status: str | None = None) -> int:
    async with notifications.sessions() as session:
        return await notifications_store.count_deliveries(session, status)


async def deliveries_per_cause(notifications: Service) -> dict[str, int]:
    async with notifications.sessions() as session:
        rows = await session.execute(
            select(notifications_store.Delivery.cause_id, func.count()).group_by(
                notifications_store.Delivery.cause_id
            )
        )
        return {cause: count for cause, count in rows}


async def membership_views(events: Service) -> int:
    async with events.sessions() as session:
        return len(await events_store.memberships(session))


async def inbox_count(service: Service) -> int:
    async with service.sessions() as session:
        return await session.scalar(select(func.count()).select_from(inbox_table)) or 0


async def outbox_drained(service: Service) -> bool:
    """Whether every fact ``service`` committed is on its stream."""
    async with service.sessions() as session:
        unsent = (
            select(func.count()).select_from(outbox_table).where(outbox_table.c.sent_at.is_(None))
        )
        return (await session.scalar(unsent) or 0) == 0


async def caught_up(nc: Client, service: Service, *producers: Service) -> bool:
    """Whether ``service`` has handled and acknowledged every fact on the streams it reads
    (and, first, whether ``producers`` have published every fact they committed)."""
    for producer in producers:
        if not await outbox_drained(producer):
            return False
    js = nc.jetstream()
    for stream in service.consumed_streams():
        info = await js.consumer_info(stream, f"{service.name}-{stream.lower()}")
        if info.num_pending or info.num_ack_pending:
            return False
    return True


async def table_rows(service: Service, table: Table) -> list[tuple[Any, ...]]:
    """Every row of one of ``service``'s tables, in primary-key order."""
    async with service.sessions() as session:
        result = await session.execute(select(table).order_by(*table.primary_key.columns))
        return [tuple(row) for row in result]
