"""Capacity under concurrency, through the running service: never more confirmed
places than capacity, the waiting list in order of arrival, promotions at once."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from contracts.events_v1 import BookingPromoted, BookPlace, CancelBooking, ShowEvent
from kernel.commands import request
from kernel.settings import Settings
from services.events.store import Booking, Event
from tests.conftest import eventually
from tests.events_support import Clock, events_service, facts, published_event

RUSH = 200
PLACES = 50


def booking(event_id: str, n: int) -> BookPlace:
    return BookPlace(event_id=event_id, name=f"Person {n:03d}", email=f"p{n:03d}@council.example")


async def rush(nc: Client, event_id: str) -> list[dict[str, object]]:
    # Published in order on one connection, answered concurrently.
    return list(await asyncio.gather(*(request(nc, booking(event_id, n)) for n in range(RUSH))))


@pytest.fixture
def store_services() -> tuple[str, ...]:
    """Only the events store goes on PostgreSQL in ``store_settings`` (tests/conftest.py):
    the cases run on SQLite and on PostgreSQL (VESTRY_TEST_POSTGRES_URL's server, else
    the embedded one)."""
    return ("events",)


@pytest.mark.slow
@pytest.mark.parametrize("replicas", [1, 2])
async def test_a_rush_fills_the_event_waitlists_the_rest_in_order_and_cancellations_promote(
    store_settings: Settings, nc: Client, replicas: int
) -> None:
    settings = store_settings
    clock = Clock()
    async with events_service(settings, clock, replicas=replicas) as services:
        event_id = await published_event(nc, capacity=PLACES)

        replies = await rush(nc, event_id)

        # Every replica took a share, through its batch writer.
        answered = [s.batchers[BookPlace.SUBJECT].answered for s in services]
        assert sum(answered) == RUSH and all(answered), answered
        batches = sum(s.batchers[BookPlace.SUBJECT].batches for s in services)
        assert batches < RUSH  # bookings were answered many to a transaction

        confirmed = [r for r in replies if r["status"] == "confirmed"]
        waiting = [r for r in replies if r["status"] == "waitlisted"]
        assert (len(confirmed), len(waiting)) == (PLACES, RUSH - PLACES)
        # Every waiting booking arrived after every confirmed one, and the
        # positions are 1..150 in order of arrival.
        assert max(int(r["arrival"]) for r in confirmed) < min(int(r["arrival"]) for r in waiting)  # type: ignore[call-overload]
        by_arrival = sorted(waiting, key=lambda r: int(r["arrival"]))  # type: ignore[call-overload]
        assert [r["position"] for r in by_arrival] == list(range(1, RUSH - PLACES + 1))
        if replicas == 1:  # one subscriber takes requests in the order they were sent
            assert [r["name"] for r in confirmed] == [f"Person {n:03d}" for n in range(PLACES)]

        for r in confirmed[:3]:
            await request(nc, CancelBooking(reference=str(r["reference"])))

        shown = await request(nc, ShowEvent(event_id=event_id))
        assert (shown["confirmed"], shown["places_left"], shown["waiting"]) == (PLACES, 0, 147)
        first_three = {str(r["reference"]) for r in by_arrival[:3]}
        async with services[0].sessions() as session:
            now_confirmed = set(
                await session.scalars(
                    select(Booking.reference).where(
                        Booking.event_id == event_id, Booking.status == "confirmed"
                    )
                )
            )
            assert first_three <= now_confirmed and len(now_confirmed) == PLACES
            count = await session.scalar(select(func.count()).where(Booking.event_id == event_id))
            assert count == RUSH
        await eventually(
            lambda: _promoted_facts_are(nc, first_three), what="one promoted fact each"
        )


async def _promoted_facts_are(nc: Client, references: set[str]) -> bool:
    promoted = await facts(nc, BookingPromoted.SUBJECT)
    return sorted(e.data["reference"] for e in promoted) == sorted(references)


async def test_no_more_confirmed_than_capacity_even_with_a_stale_count(
    settings: Settings, nc: Client
) -> None:
    """The store itself refuses an overbooking: the CHECK on the event's places."""
    clock = Clock()
    async with events_service(settings, clock) as (service,):
        event_id = await published_event(nc, capacity=1)
        await request(nc, booking(event_id, 1))
        with pytest.raises(IntegrityError):
            async with service.sessions() as session, session.begin():
                await session.execute(
                    update(Event).where(Event.id == event_id).values(confirmed=Event.confirmed + 1)
                )
        shown = await request(nc, ShowEvent(event_id=event_id))
        assert (shown["confirmed"], shown["capacity"]) == (1, 1)
