"""First come, first served through the batch writer: bookings sent in a known order
get places in that order; a refusal in the middle of a batch answers that booker alone;
with two replicas each keeps the order it was sent in and the event's lock decides
between them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nats.aio.client import Client
from sqlalchemy import select

from contracts.events_v1 import BookingConfirmed, BookingWaitlisted, BookPlace, ShowEvent
from kernel.commands import request_raw
from kernel.settings import Settings
from kernel.store import outbox_table
from services.events.store import Booking
from tests.conftest import eventually
from tests.events_support import Clock, events_service, facts, published_event

RUSH = 120
PLACES = 40


def booking(event_id: str, n: int, **fields: Any) -> BookPlace:
    return BookPlace(
        event_id=event_id, name=f"Person {n:03d}", email=f"p{n:03d}@council.example", **fields
    )


async def send_at_once(nc: Client, commands: list[BookPlace]) -> list[dict[str, Any]]:
    """Publish every command in this order on one connection; the answers, in the same order."""
    replies = await asyncio.gather(
        *(request_raw(nc, command.SUBJECT, _wire(command), timeout=30) for command in commands)
    )
    return [reply.model_dump(mode="json") for reply in replies]


def _wire(command: BookPlace) -> bytes:
    from contracts import Envelope

    return Envelope.wrap(command).to_bytes()


@pytest.fixture
def store_services() -> tuple[str, ...]:
    return ("events",)


@pytest.mark.slow
async def test_bookings_sent_in_a_known_order_are_placed_in_that_order(
    store_settings: Settings, nc: Client
) -> None:
    async with events_service(store_settings, Clock()) as (service,):
        event_id = await published_event(nc, capacity=PLACES)

        replies = await send_at_once(nc, [booking(event_id, n) for n in range(RUSH)])

        answers = [reply["data"] for reply in replies]
        assert all(reply["ok"] for reply in replies)
        # The first PLACES sent are confirmed, the rest wait in the order sent.
        assert [a["status"] for a in answers] == ["confirmed"] * PLACES + ["waitlisted"] * (
            RUSH - PLACES
        )
        assert [a["position"] for a in answers[PLACES:]] == list(range(1, RUSH - PLACES + 1))
        assert [a["arrival"] for a in answers] == list(range(1, RUSH + 1))
        batcher = service.batchers[BookPlace.SUBJECT]
        assert batcher.batches < RUSH  # many bookings shared a transaction
        # The facts went into the outbox in the same order, one per booking.
        async with service.sessions() as session:
            said = [
                row.subject
                for row in await session.execute(
                    select(outbox_table.c.subject)
                    .where(
                        outbox_table.c.subject.in_(
                            [BookingConfirmed.SUBJECT, BookingWaitlisted.SUBJECT]
                        )
                    )
                    .order_by(outbox_table.c.seq)
                )
            ]
        assert said == [BookingConfirmed.SUBJECT] * PLACES + [BookingWaitlisted.SUBJECT] * (
            RUSH - PLACES
        )
        await eventually(
            lambda: _facts_in_arrival_order(nc, [str(a["booking_id"]) for a in answers]),
            what="confirmed and waitlisted facts in arrival order",
        )


async def _facts_in_arrival_order(nc: Client, booking_ids: list[str]) -> bool:
    published = [
        envelope.data["booking_id"]
        for envelope in await facts(nc)
        if envelope.type in ("BookingConfirmed", "BookingWaitlisted")
    ]
    return published == booking_ids


@pytest.mark.slow
async def test_two_replicas_each_keep_the_order_sent_and_the_lock_decides_between_them(
    store_settings: Settings, nc: Client
) -> None:
    async with events_service(store_settings, Clock(), replicas=2) as services:
        event_id = await published_event(nc, capacity=PLACES)

        replies = await send_at_once(nc, [booking(event_id, n) for n in range(RUSH)])

        answers = [reply["data"] for reply in replies]
        assert all(reply["ok"] for reply in replies)
        assert all(s.batchers[BookPlace.SUBJECT].answered for s in services)
        # Arrival is the order in which the event's lock let each booking in: 1..RUSH,
        # no gaps; the first PLACES arrivals are confirmed, the rest wait in arrival order.
        arrivals = [int(a["arrival"]) for a in answers]
        assert sorted(arrivals) == list(range(1, RUSH + 1))
        by_arrival = sorted(answers, key=lambda a: int(a["arrival"]))
        assert [a["status"] for a in by_arrival] == ["confirmed"] * PLACES + ["waitlisted"] * (
            RUSH - PLACES
        )
        assert [a["position"] for a in by_arrival[PLACES:]] == list(range(1, RUSH - PLACES + 1))
        # Each replica takes the bookings it is given in the order they were sent, so the
        # order sent, read in arrival order, interleaves at most two rising sequences: it
        # never falls three times in a row (no decreasing subsequence of length three).
        sent_order = [int(str(a["name"]).split()[1]) for a in by_arrival]
        assert _rising_sequences_needed(sent_order) <= 2, sent_order
        shown = await request_raw(nc, ShowEvent.SUBJECT, _wire_show(event_id))
        assert shown.data is not None and shown.data["confirmed"] == PLACES
        async with services[0].sessions() as session:
            stored = list(
                await session.scalars(
                    select(Booking.arrival)
                    .where(Booking.event_id == event_id, Booking.status == "confirmed")
                    .order_by(Booking.arrival)
                )
            )
        assert stored == list(range(1, PLACES + 1))  # never more confirmed than places


def _wire_show(event_id: str) -> bytes:
    from contracts import Envelope

    return Envelope.wrap(ShowEvent(event_id=event_id)).to_bytes()


def _rising_sequences_needed(values: list[int]) -> int:
    """The fewest increasing subsequences ``values`` splits into (patience sorting: the
    number of piles equals the longest decreasing subsequence)."""
    tops: list[int] = []  # the last value of each rising sequence
    for value in values:
        for i, top in enumerate(tops):
            if top < value:
                tops[i] = value
                break
        else:
            tops.append(value)
    return len(tops)


async def test_a_refusal_in_a_batch_answers_that_booker_alone(
    settings: Settings, nc: Client
) -> None:
    async with events_service(settings, Clock()) as (service,):
        event_id = await published_event(nc, capacity=3, places_per_organisation=2)
        commands = [
            booking(event_id, 0, organisation_name="Bolton Council"),
            booking(event_id, 1, phone="0161 23"),  # not a mobile number
            booking(event_id, 2, organisation_name="bolton council"),
            booking(event_id, 0),  # the same email again
            booking(event_id, 3, organisation_name="Bolton Council"),  # over its two places
            booking("E-NOPE", 4),
            booking(event_id, 5, member_id="M-NOPE"),
            booking(event_id, 6),
            booking(event_id, 7),  # the event is full: waits
        ]

        replies = await send_at_once(nc, commands)

        outcomes = [
            reply["data"]["status"] if reply["ok"] else reply["error"]["code"] for reply in replies
        ]
        assert outcomes == [
            "confirmed",
            "invalid",
            "confirmed",
            "duplicate",
            "over_limit",
            "not_found",
            "not_found",
            "confirmed",
            "waitlisted",
        ]
        assert [reply["error"]["field"] for reply in replies if not reply["ok"]] == [
            "phone",
            "email",
            "organisation_name",
            "event_id",
            "member_id",
        ]
        # Only the accepted ones arrived, with no gaps, in the order sent.
        assert [reply["data"]["arrival"] for reply in replies if reply["ok"]] == [1, 2, 3, 4]
        assert replies[-1]["data"]["position"] == 1
        shown = await request_raw(nc, ShowEvent.SUBJECT, _wire_show(event_id))
        assert shown.data is not None
        assert (shown.data["confirmed"], shown.data["waiting"]) == (3, 1)
        assert service.batchers[BookPlace.SUBJECT].batches < len(commands)
