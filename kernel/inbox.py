"""The idempotent inbox: a handled message id, recorded in the effect's own transaction."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.store import inbox_table


async def claim(session: AsyncSession, scope: str, message_id: str) -> bool:
    """Record ``message_id`` as handled in ``scope``; False if it already was.

    Call it inside the transaction that applies the message's effect, so that
    the record and the effect commit or roll back together.
    """
    seen = await session.scalar(
        select(inbox_table.c.message_id).where(
            inbox_table.c.scope == scope, inbox_table.c.message_id == message_id
        )
    )
    if seen is not None:
        return False
    await session.execute(
        inbox_table.insert().values(
            scope=scope, message_id=message_id, handled_at=datetime.now(UTC)
        )
    )
    return True
