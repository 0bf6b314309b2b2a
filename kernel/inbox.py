"""The idempotent inbox: handled message ids, recorded in the effect's own transaction."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.store import inbox_table


async def handled(session: AsyncSession, scope: str, message_ids: Iterable[str]) -> set[str]:
    """Which of ``message_ids`` ``scope`` has already handled."""
    ids = list(message_ids)
    if not ids:
        return set()
    rows = await session.scalars(
        select(inbox_table.c.message_id).where(
            inbox_table.c.scope == scope, inbox_table.c.message_id.in_(ids)
        )
    )
    return set(rows)


async def record(session: AsyncSession, scope: str, message_ids: Iterable[str]) -> None:
    """Record ``message_ids`` as handled; call it in the transaction that applies their effects.

    The primary key (scope, message id) makes a second record of the same id
    fail the transaction, so two replicas racing on one message cannot both
    apply it.
    """
    now = datetime.now(UTC)
    rows = [
        {"scope": scope, "message_id": message_id, "handled_at": now} for message_id in message_ids
    ]
    if rows:
        await session.execute(inbox_table.insert(), rows)


async def claim(session: AsyncSession, scope: str, message_id: str) -> bool:
    """Record one message as handled; False if it already was."""
    if await handled(session, scope, [message_id]):
        return False
    await record(session, scope, [message_id])
    return True


async def forget_before(session: AsyncSession, before: datetime) -> int:
    """Delete the records of messages handled before ``before``; returns how many.

    A replay reaching further back than that would apply those messages again, so
    the retention (``inbox_retention_s``) must cover the oldest replay an operator runs.
    """
    result = await session.execute(delete(inbox_table).where(inbox_table.c.handled_at < before))
    return result.rowcount or 0  # type: ignore[attr-defined]
