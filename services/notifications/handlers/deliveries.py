"""ListDeliveries: the delivery ledger a page at a time, what needs someone first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, case, func, or_, select

from contracts.notifications_v1 import ListDeliveries
from kernel.commands import CommandContext, Refused
from services.notifications import domain, store

# The order staff read the ledger in: what failed (and may be resent), what waits for
# the end of quiet hours, what is still to send, what went.
RANKS = {"failed": 0, "deferred": 1, "pending": 2, "sent": 3}


def rank() -> Any:
    """A row's place in that order, as SQL."""
    return case(RANKS, value=store.Delivery.status, else_=len(RANKS))


def cursor_of(delivery: store.Delivery) -> str:
    return (
        f"{RANKS.get(delivery.status, len(RANKS))}|{delivery.created_at.isoformat()}|{delivery.id}"
    )


def after_cursor(text: str) -> Any:
    """The condition for the rows after ``text`` in the ledger's order; refused if it is
    not a cursor this command gave."""
    try:
        place_text, created, delivery_id = text.split("|")
        at, place = datetime.fromisoformat(created), int(place_text)
    except ValueError:
        raise Refused("invalid", "that is not a cursor from an earlier page", "after") from None
    row, its_rank = store.Delivery, rank()
    return or_(
        its_rank > place,
        and_(
            its_rank == place,
            or_(row.created_at < at, and_(row.created_at == at, row.id < delivery_id)),
        ),
    )


def utc(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def describe(delivery: store.Delivery) -> dict[str, Any]:
    forgotten = domain.is_forgotten_recipient(delivery.recipient)
    return {
        "delivery_id": delivery.id,
        "recipient": None if forgotten else delivery.recipient,
        "forgotten": forgotten,
        "channel": delivery.channel,
        "template": delivery.template,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "segments": delivery.segments,
        "broadcast_id": delivery.broadcast_id,
        "created_at": utc(delivery.created_at),
        "sent_at": utc(delivery.sent_at),
        "next_attempt_at": utc(delivery.next_attempt_at) if delivery.status != "sent" else None,
        "last_error": delivery.last_error,
    }


async def list_deliveries(command: ListDeliveries, ctx: CommandContext) -> dict[str, Any]:
    """One page of deliveries: failed, deferred, pending, then sent, newest first in each."""
    row = store.Delivery
    where = []
    if command.broadcast_id:
        where.append(row.broadcast_id == command.broadcast_id)
    counted = await ctx.session.execute(
        select(row.status, func.count()).where(*where).group_by(row.status)
    )
    counts = dict.fromkeys(RANKS, 0) | {status: count for status, count in counted}
    if command.status:
        where.append(row.status == command.status)
    if command.after:
        where.append(after_cursor(command.after))
    # One more than the page, to know whether another follows.
    found = list(
        await ctx.session.scalars(
            select(row)
            .where(*where)
            .order_by(rank(), row.created_at.desc(), row.id.desc())
            .limit(command.limit + 1)
        )
    )
    page = found[: command.limit]
    return {
        "deliveries": [describe(delivery) for delivery in page],
        "counts": counts,
        "next": cursor_of(page[-1]) if len(found) > command.limit else None,
    }
