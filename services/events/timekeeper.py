"""The clock-driven work: reminders that fell due, events that ended, and bookings
kept past the retention period.

Each reminder row is claimed with a conditional update (pending → sent) in the
transaction that writes its ``ReminderDue`` fact, whose id is derived from the
row: two replicas, a crash or a retry can never send one twice. An event whose
end has passed is completed and each confirmed booking not checked in is
recorded as a no-show, once. An event that ended longer ago than the retention
period has its bookers redacted, once, as an erasure would.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts.envelope import derived_message_id
from contracts.events_v1 import ReminderDue
from kernel.outbox import Publisher
from services.events import domain, store
from services.events.facts import booking_fields, calendar_entry
from services.events.handlers import attendance_recorded

log = logging.getLogger(__name__)

BATCH = 500


async def send_due_reminders(sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """Publish every reminder due by ``now``; returns how many this call sent."""
    sent = 0
    while True:
        async with sessions() as session, session.begin():
            due = await store.due_reminders(session, now, BATCH)
            publish = Publisher(session)
            for reminder in due:
                if not await store.claim_reminder(session, reminder.id, now):
                    continue
                booking = await session.get(store.Booking, reminder.booking_id)
                event = await store.event(session, reminder.event_id)
                assert booking is not None and event is not None
                if booking.status != "confirmed" or event.status != "published":
                    continue  # voided in spirit: cancellations void reminders in their own transaction
                if domain.is_redacted(booking.email):
                    continue  # erasure voids them too; this catches one scheduled while it ran
                await publish(
                    ReminderDue(
                        **booking_fields(booking, event),
                        reminder_id=reminder.id,
                        due_at=reminder.due_at,
                        hours_before=reminder.hours_before,
                        calendar=calendar_entry(event),
                    ),
                    id=derived_message_id("ReminderDue", reminder.id),
                )
                sent += 1
        if len(due) < BATCH:
            return sent


async def complete_ended_events(sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """Complete each published event that has ended, recording its no-shows; returns how many."""
    async with sessions() as session:
        ended = await store.ended_published(session, now)
    for event_id in ended:
        async with sessions() as session, session.begin():
            event = await store.event_for_update(session, event_id)
            if event is None or event.status != "published":
                continue  # another replica got there first
            event.status = "completed"
            event.updated_at = now
            publish = Publisher(session)
            for booking in await store.bookings_of(session, event.id, ("confirmed",)):
                if booking.attendance is None:
                    booking.attendance = "no_show"
                    booking.attendance_at = now
                    await publish(
                        attendance_recorded(booking, now),
                        id=derived_message_id("AttendanceRecorded", booking.id),
                    )
    return len(ended)


async def redact_past_bookings(
    sessions: async_sessionmaker[AsyncSession], now: datetime, *, retention_days: int
) -> int:
    """Redact the bookers of every event that ended more than ``retention_days`` ago
    (0: never), an event per transaction; returns how many bookings this call redacted.

    It publishes nothing: nobody asked, and the person may be known elsewhere still.
    """
    cutoff = domain.retention_cutoff(now, retention_days)
    if cutoff is None:
        return 0
    async with sessions() as session:
        due = await store.events_past_retention(session, cutoff)
    redacted = 0
    for event_id in due:
        async with sessions() as session, session.begin():
            event = await store.event_for_update(session, event_id)
            if event is None or event.bookings_redacted_at is not None:
                continue  # another replica got there first
            redacted += await store.redact_bookings(
                session, await store.bookings_of(session, event.id)
            )
            event.bookings_redacted_at = now
    return redacted


async def keep_time(
    sessions: async_sessionmaker[AsyncSession],
    clock: Callable[[], datetime],
    *,
    poll_s: float,
    retention_days: int = 0,
    wake_relay: Callable[[], None] = lambda: None,
) -> None:
    """Send due reminders, complete ended events and redact bookings kept past
    ``retention_days`` (0: never), every ``poll_s`` seconds, until cancelled."""
    while True:
        try:
            now = clock()
            if await send_due_reminders(sessions, now) + await complete_ended_events(sessions, now):
                wake_relay()
            await redact_past_bookings(sessions, now, retention_days=retention_days)
        except asyncio.CancelledError:
            raise
        except Exception:  # the store may be busy or away; the next round tries again
            log.exception("timekeeper round failed")
        await asyncio.sleep(poll_s)
