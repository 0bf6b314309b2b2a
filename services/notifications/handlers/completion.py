"""Completing a broadcast, once, when none of its deliveries is left to send."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import derived_message_id
from contracts.notifications_v1 import BroadcastCompleted
from kernel.outbox import Publisher
from services.notifications import store


async def complete_broadcast(
    session: AsyncSession, broadcast: store.Broadcast, publish: Publisher, counts: dict[str, int]
) -> None:
    """Mark ``broadcast`` complete and publish its BroadcastCompleted fact, once."""
    broadcast.completed_at = datetime.now(UTC)
    await publish(
        BroadcastCompleted(
            broadcast_id=broadcast.id,
            topic=broadcast.topic,
            template=broadcast.template,
            channels=broadcast.channels.split(","),
            recipients=broadcast.recipients,
            sent=counts.get("sent", 0),
            failed=counts.get("failed", 0),
            skipped_for_consent=broadcast.skipped_for_consent,
        ),
        id=derived_message_id("broadcast", broadcast.id, "completed"),
    )


async def settle_broadcast(session: AsyncSession, broadcast_id: str, publish: Publisher) -> None:
    """Complete the broadcast if none of its rows is left to send.

    Replicas settling a broadcast's last rows at the same moment take turns on its row
    (``FOR UPDATE`` on PostgreSQL; SQLite's write lock already serialises them): each
    has written its own rows first, so the last to get the lock sees every other's
    committed and completes it, once. Looked at without the lock, each could see the
    others' rows as still to send, and none would complete it. Callers settle several
    broadcasts in the order of their ids, so that two never wait on each other."""
    broadcast = await store.lock_broadcast(session, broadcast_id)
    if broadcast is None or broadcast.completed_at is not None:
        return
    if await store.broadcast_open(session, broadcast_id):  # the usual case, found at once
        return
    counts = await store.broadcast_counts(session, broadcast_id)
    if counts["pending"] == 0 and counts["deferred"] == 0:
        await complete_broadcast(session, broadcast, publish, counts)
