"""Facts through the whole kernel: the subscriptions outbox, its relay, JetStream, and the
events service's durable consumer committing each fact's inbox record and read-model row.

The outbox rows are written before the relay starts, in transactions of
``PER_TRANSACTION`` rows, and timed on their own. The pipeline clock starts
when the subscriptions service (and so its relay) starts and stops when the
events store holds every fact, committed. A plain nats-py run on its own stream
of the same server gives the baseline.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from tempfile import TemporaryDirectory

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from benchmarks import raw_nats
from benchmarks.common import Figure, rate, wait_until
from contracts import Envelope
from contracts.subscriptions_v1 import MembershipStarted
from kernel import migrations, outbox
from kernel.runtime import Service
from kernel.settings import Settings
from kernel.store import inbox_table
from services.events import app as events_app
from services.events.store import MembershipView
from services.subscriptions import app as subscriptions_app
from vestry.natsserver import NatsServer, free_port

DESCRIPTION = "outbox → relay → JetStream → events consumer → inbox + read model, vs raw nats-py"
PER_TRANSACTION = 5_000
RAW_SIZE = 200


@dataclass(frozen=True)
class PipelineTimings:
    write_s: float  # inserting the outbox rows (not part of the pipeline figure)
    relayed_s: float  # relay start until it has published (and marked) every row
    applied_s: float  # relay start until the events store holds every fact, committed
    payload_bytes: float


def membership_started(i: int) -> Envelope:
    return Envelope.wrap(
        MembershipStarted(
            membership_id=str(uuid.uuid4()),
            member_id=str(uuid.uuid4()),
            member_name=f"Member {i:06d}",
            tier="standard",
            billing_email=f"billing{i:06d}@example.org",
            starts_on=date(2025, 1, 1),
        )
    )


async def fill_outbox(
    sessions: async_sessionmaker[AsyncSession], envelopes: list[Envelope]
) -> float:
    """Queue every envelope, ``PER_TRANSACTION`` to a transaction; returns the seconds taken."""
    started = time.monotonic()
    for first in range(0, len(envelopes), PER_TRANSACTION):
        async with sessions() as session, session.begin():
            for envelope in envelopes[first : first + PER_TRANSACTION]:
                await outbox.add(session, envelope, MembershipStarted.SUBJECT)
    return time.monotonic() - started


async def committed(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    """Read-model rows and inbox records in the events store."""
    async with sessions() as session:
        views = await session.scalar(select(func.count()).select_from(MembershipView))
        claims = await session.scalar(select(func.count()).select_from(inbox_table))
        return views or 0, claims or 0


async def pipeline(settings: Settings, count: int, timeout: float) -> PipelineTimings:
    producer = subscriptions_app.create_service(settings)
    consumer = events_app.create_service(settings)
    envelopes = [membership_started(i) for i in range(count)]
    payload = sum(len(e.to_bytes()) for e in envelopes) / count
    await migrations.upgrade(producer.engine, subscriptions_app.MIGRATIONS)
    write_s = await fill_outbox(producer.sessions, envelopes)

    async with consumer.running():
        # Its durable on SUBSCRIPTIONS (it also reads PEOPLE, where nothing comes here).
        (facts,) = [c for c in consumer.consumers if c.spec.stream == "SUBSCRIPTIONS"]
        async with producer.running():
            # The relay task exists but has not run yet: nothing awaited since it was made.
            started = time.monotonic()
            deadline = started + timeout
            relay = _relay(producer)
            relayed = await wait_until(
                lambda: relay.published >= count, timeout=deadline - started, what="relay"
            )
            await wait_until(
                lambda: facts.stats.applied >= count,
                timeout=deadline - time.monotonic(),
                what="events consumer",
            )
            # Applied is counted inside the batch's transaction: wait for its commit.
            while (found := await committed(consumer.sessions)) != (count, count):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"events store holds {found}, not {count}")
                await asyncio.sleep(0.01)
            applied = time.monotonic()
        if facts.stats.skipped or facts.stats.dead_lettered or facts.stats.retried:
            raise RuntimeError(f"unexpected consumer outcome: {facts.stats}")
    return PipelineTimings(write_s, relayed - started, applied - started, payload)


def _relay(service: Service) -> outbox.OutboxRelay:
    assert service.relay is not None
    return service.relay


async def run(count: int) -> list[Figure]:
    timeout = max(120.0, count / 50)  # generous: about 5x the rate measured here
    with (
        TemporaryDirectory(prefix="vestry-bench-") as tmp,
        NatsServer(store_dir=Path(tmp) / "jetstream") as server,
    ):
        settings = Settings(data_dir=Path(tmp) / "data", nats_url=server.url, smtp_port=free_port())
        raw = await raw_nats.publish_then_consume(server.url, count, size=RAW_SIZE, timeout=timeout)
        vestry = await pipeline(settings, count, timeout)
    vestry_rate = rate(count, vestry.applied_s)
    raw_rate = rate(count, raw.total_s)
    return [
        Figure(
            "outbox write (not in pipeline)",
            rate(count, vestry.write_s),
            "rows/s",
            f"{PER_TRANSACTION:,} per transaction",
        ),
        Figure(
            "relay published + marked sent",
            rate(count, vestry.relayed_s),
            "facts/s",
            f"{vestry.relayed_s:.2f}s after relay start",
        ),
        Figure(
            "vestry outbox→inbox end to end",
            vestry_rate,
            "facts/s",
            f"{vestry.applied_s:.2f}s, {vestry.payload_bytes:.0f}-byte envelopes",
        ),
        Figure("raw publish_async + acks", rate(count, raw.publish_s), "msgs/s"),
        Figure(
            "raw pull fetch + ack",
            rate(count, raw.consume_s),
            "msgs/s",
            f"batches of {raw_nats.BATCH}",
        ),
        Figure(
            "raw end to end", raw_rate, "msgs/s", f"{raw.total_s:.2f}s, {RAW_SIZE}-byte messages"
        ),
        Figure("vestry / raw", vestry_rate / raw_rate, "×"),
    ]
