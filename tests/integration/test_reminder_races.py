"""Reminders with two and three events timekeepers on one store (SQLite, and PostgreSQL
where their transactions overlap): every timekeeper looks for due reminders at the same
moment, and each booking hears once per offset, a cancelled one never."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
from nats.aio.client import Client

from contracts.events_v1 import BookPlace, CancelBooking, ReminderDue
from kernel.commands import request
from kernel.settings import Settings
from services.events.timekeeper import send_due_reminders
from tests.conftest import eventually
from tests.events_support import EVENT_DAY, Clock, events_service, facts, published_event
from tests.stack import outbox_drained

BOOKINGS = 40
OFFSETS = (168, 24)  # hours before: the default reminders, a week and a day ahead


@pytest.fixture
def store_services() -> tuple[str, ...]:
    """Only the events store goes on PostgreSQL in ``store_settings``."""
    return ("events",)


@pytest.mark.slow
@pytest.mark.parametrize("replica_count", [2, 3])
async def test_timekeepers_racing_send_one_reminder_per_booking_and_offset(
    store_settings: Settings, nc: Client, replica_count: int
) -> None:
    clock = Clock()
    async with events_service(store_settings, clock, replicas=replica_count) as services:
        event_id = await published_event(nc, capacity=BOOKINGS)
        references = [
            (
                await request(
                    nc, BookPlace(event_id=event_id, name=f"Person {n}", email=f"p{n}@c.example")
                )
            )["reference"]
            for n in range(BOOKINGS)
        ]
        await request(nc, CancelBooking(reference=references[0]))

        # Past the week-ahead point: every timekeeper at once, twice over.
        week_ahead = EVENT_DAY - timedelta(hours=100)
        first = await asyncio.gather(
            *(send_due_reminders(s.sessions, week_ahead) for s in services for _ in range(2))
        )
        # Past the day-ahead point too.
        day_ahead = EVENT_DAY - timedelta(hours=2)
        second = await asyncio.gather(
            *(send_due_reminders(s.sessions, day_ahead) for s in services for _ in range(2))
        )

        live = BOOKINGS - 1
        assert (sum(first), sum(second)) == (live, live)
        await eventually(lambda: outbox_drained(services[0]), what="the outbox drained")
        reminders = await facts(nc, ReminderDue.SUBJECT)
        sent = Counter((r.data["reference"], r.data["hours_before"]) for r in reminders)
        assert sent == {(ref, hours): 1 for ref in references[1:] for hours in OFFSETS}
        assert len({r.id for r in reminders}) == len(reminders) == 2 * live
