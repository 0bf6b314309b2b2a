"""The idempotent inbox: handled message ids, recorded in the effect's own transaction."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.store import inbox_table

# Built once: the ids go in as one expanding parameter, not a literal each per call.
_WHERE = (
    inbox_table.c.scope == bindparam("scope"),
    inbox_table.c.message_id.in_(bindparam("ids", expanding=True)),
)
_HANDLED = select(inbox_table.c.message_id).where(*_WHERE)
_COUNT = select(func.count()).select_from(inbox_table).where(*_WHERE)


async def handled(session: AsyncSession, scope: str, message_ids: Iterable[str]) -> set[str]:
    """Which of ``message_ids`` ``scope`` has already handled.

    A batch is mostly all handled (a replay) or none (live traffic): a count answers
    both without reading the ids back; only a batch of both asks which.
    """
    ids = set(message_ids)
    if not ids:
        return set()
    asked = {"scope": scope, "ids": list(ids)}
    count = await session.scalar(_COUNT, asked)
    if not count:
        return set()
    if count == len(ids):
        return ids
    return set(await session.scalars(_HANDLED, asked))


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
