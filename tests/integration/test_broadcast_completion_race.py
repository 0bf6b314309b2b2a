"""Two replicas settle a broadcast's last two rows at the same moment, each in its own
transaction: the broadcast is completed once, by whichever looks last. On PostgreSQL
both have written their row before either looks (without the broadcast's row lock,
each saw the other's row still to send and neither completed it); on SQLite the
write lock lets only one in at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.notifications_v1 import BroadcastCompleted
from kernel import migrations
from kernel.outbox import Publisher
from kernel.settings import Settings
from kernel.store import create_engine, outbox_table, session_factory
from services.notifications.app import MIGRATIONS
from services.notifications.handlers import settle_broadcast
from services.notifications.store import Broadcast, Delivery

NOW = datetime(2026, 11, 26, 10, tzinfo=UTC)


@pytest.fixture
def store_services() -> tuple[str, ...]:
    return ("notifications",)


@pytest.fixture
async def engine(store_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(store_settings.database_url("notifications"))
    await migrations.upgrade(engine, MIGRATIONS)
    yield engine
    await engine.dispose()


async def a_broadcast_with_two_rows_left(engine: AsyncEngine) -> None:
    async with session_factory(engine)() as session, session.begin():
        session.add(
            Broadcast(
                id="b-1",
                topic="warp",
                template="broadcast",
                channels="email",
                urgent=False,
                recipients=2,
                planned=2,
                skipped_for_consent=0,
                created_at=NOW,
            )
        )
        for n in (1, 2):
            session.add(
                Delivery(
                    id=f"d-{n}",
                    cause_id="b-1",
                    recipient=f"officer{n}@council.example.gov.uk",
                    channel="email",
                    template="broadcast",
                    context="{}",
                    status="pending",
                    next_attempt_at=NOW,
                    created_at=NOW,
                    broadcast_id="b-1",
                )
            )


async def test_the_last_rows_settled_at_once_complete_the_broadcast_once(
    engine: AsyncEngine,
) -> None:
    await a_broadcast_with_two_rows_left(engine)
    sessions = session_factory(engine)
    # On PostgreSQL both rows are written, uncommitted, before either replica looks.
    both_written = asyncio.Barrier(2 if engine.dialect.name == "postgresql" else 1)

    async def replica(n: int) -> None:
        async with sessions() as session, session.begin():
            await session.execute(
                update(Delivery).where(Delivery.id == f"d-{n}").values(status="sent", sent_at=NOW)
            )
            await both_written.wait()
            await settle_broadcast(session, "b-1", Publisher(session))

    await asyncio.wait_for(asyncio.gather(replica(1), replica(2)), 30)

    async with sessions() as session:
        broadcast = await session.get(Broadcast, "b-1")
        completions = await session.scalar(
            select(func.count())
            .select_from(outbox_table)
            .where(outbox_table.c.subject == BroadcastCompleted.SUBJECT)
        )
    assert broadcast is not None and broadcast.completed_at is not None
    assert completions == 1
