"""The events service as the officer and the bookers use it: prices, changes,
cancellations, reminders, calendars, attendance, and bad input refused."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from icalendar import Calendar
from nats.aio.client import Client
from sqlalchemy import func, select

from contracts import Envelope
from contracts.events_v1 import (
    AttendanceRecorded,
    BookingCancelled,
    BookingChargeable,
    BookingConfirmed,
    BookingPromoted,
    BookPlace,
    CalendarEntry,
    CancelBooking,
    CancelEvent,
    CheckIn,
    EventCancelled,
    EventChanged,
    EventFeed,
    EventReport,
    ListBookings,
    ListEvents,
    PublishEvent,
    ReminderDue,
    ShowBooking,
    ShowEvent,
    UpdateEvent,
)
from contracts.money import Money
from contracts.subscriptions_v1 import MembershipChanged, MembershipEnded, MembershipStarted
from kernel.commands import CommandFailed, request, request_raw
from kernel.outbox import unsent_count
from kernel.runtime import Service
from kernel.settings import Settings
from kernel.store import outbox_table
from services.events import calendar
from services.events import store as events_store
from services.events.store import Booking, Reminder
from services.events.timekeeper import complete_ended_events, send_due_reminders
from tests.conftest import eventually
from tests.events_support import (
    EVENT_DAY,
    Clock,
    event_command,
    events_service,
    facts,
    published_event,
)


def book(event_id: str, n: int, **fields: Any) -> BookPlace:
    return BookPlace(event_id=event_id, name=f"Person {n}", email=f"p{n}@council.example", **fields)


async def refused(nc: Client, command: Any) -> tuple[str, str | None, str]:
    with pytest.raises(CommandFailed) as failure:
        await request(nc, command)
    error = failure.value.error
    return error.code, error.field, error.message


async def outbox_rows(service: Service) -> int:
    async with service.sessions() as session:
        return await session.scalar(select(func.count()).select_from(outbox_table)) or 0


async def membership(nc: Client, member_id: str, name: str, fact: Any = None) -> None:
    """Put a subscriptions fact in its stream, as the subscriptions service would."""
    fact = fact or MembershipStarted(
        membership_id=f"ms-{member_id}",
        member_id=member_id,
        member_name=name,
        tier="district",
        billing_email="ap@example.gov.uk",
        starts_on=date(2026, 4, 1),
    )
    envelope = Envelope.wrap(fact)
    await nc.jetstream().publish(
        fact.SUBJECT, envelope.to_bytes(), headers={"Nats-Msg-Id": envelope.id}
    )


async def test_member_pays_the_member_price_and_only_a_fee_is_chargeable(
    settings: Settings, nc: Client, streams: None
) -> None:
    async with events_service(settings, Clock()) as (service,):
        await membership(nc, "m-wigan", "Wigan Council")
        await membership(nc, "m-eden", "Eden District Council")
        await membership(
            nc,
            "m-eden",
            "Eden District Council",
            MembershipEnded(
                membership_id="ms-m-eden",
                member_id="m-eden",
                member_name="Eden District Council",
                ends_on=date(2026, 12, 31),
            ),
        )
        await eventually(lambda: sum(c.stats.applied for c in service.consumers) == 3)
        event_id = await published_event(
            nc, member_price=Money(amount_minor=0), non_member_price=Money(amount_minor=9500)
        )

        by_id = await request(nc, book(event_id, 1, member_id="m-wigan"))
        by_name = await request(nc, book(event_id, 2, organisation_name="wigan council"))
        lapsed = await request(nc, book(event_id, 3, member_id="m-eden"))
        outsider = await request(nc, book(event_id, 4, organisation_name="Acme Consulting Ltd"))

        assert [(r["price_minor"], r["member_price"]) for r in (by_id, by_name)] == [(0, True)] * 2
        assert by_name["member_id"] == "m-wigan"
        assert (lapsed["price_minor"], lapsed["member_price"]) == (9500, False)
        assert (outsider["price_minor"], outsider["member_price"]) == (9500, False)
        await eventually(lambda: _count(nc, BookingConfirmed.SUBJECT, 4))
        chargeable = await facts(nc, BookingChargeable.SUBJECT)
        assert sorted(e.data["reference"] for e in chargeable) == sorted(
            [lapsed["reference"], outsider["reference"]]
        )
        assert {e.data["fee"]["amount_minor"] for e in chargeable} == {9500}
        unknown = await refused(nc, book(event_id, 5, member_id="m-nobody"))
        assert unknown[:2] == ("not_found", "member_id")


async def test_moving_an_event_moves_reminders_and_tells_each_confirmed_attendee(
    settings: Settings, nc: Client
) -> None:
    clock = Clock()
    async with events_service(settings, clock) as (service,):
        event_id = await published_event(nc, capacity=2)
        first = await request(nc, book(event_id, 1))
        await request(nc, book(event_id, 2))
        waiting = await request(nc, book(event_id, 3))
        assert waiting["status"] == "waitlisted"

        later = EVENT_DAY + timedelta(days=14)
        changed = await request(
            nc, UpdateEvent(event_id=event_id, starts_at=later, ends_at=later + timedelta(hours=3))
        )
        assert changed["moved"] and changed["sequence"] == 1

        async with service.sessions() as session:
            pending = list(
                await session.scalars(select(Reminder).where(Reminder.status == "pending"))
            )
        assert sorted({r.due_at for r in pending}) == [
            later - timedelta(days=7),
            later - timedelta(days=1),
        ]
        assert len(pending) == 4  # two confirmed bookings × two offsets
        await eventually(lambda: _count(nc, EventChanged.SUBJECT, 1))
        (fact,) = await facts(nc, EventChanged.SUBJECT)
        assert fact.data["moved"] is True
        assert len(fact.data["attendees"]) == 2  # the waiting booker is not told
        assert fact.data["calendar"]["uid"] == f"{event_id}@events.vestry"

        # The old 7-day point passes: nothing is due; the new one passes: one each.
        clock.now = EVENT_DAY - timedelta(days=6)
        assert await send_due_reminders(service.sessions, clock.now) == 0
        clock.now = later - timedelta(days=6)
        assert await send_due_reminders(service.sessions, clock.now) == 2
        assert await send_due_reminders(service.sessions, clock.now) == 0
        await eventually(lambda: _count(nc, ReminderDue.SUBJECT, 2))
        reminder = (await facts(nc, ReminderDue.SUBJECT))[0]
        assert reminder.data["hours_before"] == 168
        assert reminder.data["reference"] in {first["reference"], waiting["reference"]} | {
            r.data["reference"] for r in await facts(nc, BookingConfirmed.SUBJECT)
        }


async def test_reminders_are_sent_once_each_by_two_replicas_and_none_for_cancelled(
    settings: Settings, nc: Client
) -> None:
    clock = Clock()
    async with events_service(settings, clock, replicas=2, poll_s=0.05) as services:
        event_id = await published_event(nc, capacity=10)
        references = [(await request(nc, book(event_id, n)))["reference"] for n in range(5)]
        await request(nc, CancelBooking(reference=references[0]))

        clock.now = EVENT_DAY - timedelta(hours=23)  # past both the 7-day and 1-day points

        await eventually(lambda: _count(nc, ReminderDue.SUBJECT, 8), what="8 reminders")
        clock.advance(minutes=30)
        await eventually(lambda: _outbox_empty(services[0]))
        reminders = await facts(nc, ReminderDue.SUBJECT)
        assert len(reminders) == 8  # 4 live bookings × 2 offsets, once each
        assert references[0] not in {e.data["reference"] for e in reminders}


async def test_cancelling_an_event_cancels_every_booking_once_and_silences_reminders(
    settings: Settings, nc: Client
) -> None:
    clock = Clock()
    async with events_service(settings, clock) as (service,):
        event_id = await published_event(nc, capacity=3)
        for n in range(5):
            await request(nc, book(event_id, n))

        reply = await request(nc, CancelEvent(event_id=event_id, reason="Venue flooded"))
        assert reply["bookings_cancelled"] == 5 and reply["status"] == "cancelled"
        again = await refused(nc, CancelEvent(event_id=event_id))
        assert again[:2] == ("closed", "event_id")

        await eventually(lambda: _count(nc, BookingCancelled.SUBJECT, 5))
        cancelled = await facts(nc, BookingCancelled.SUBJECT)
        assert len({e.data["booking_id"] for e in cancelled}) == 5
        assert {e.data["reason"] for e in cancelled} == {"event_cancelled"}
        assert sorted(e.data["was"] for e in cancelled) == ["confirmed"] * 3 + ["waitlisted"] * 2
        assert await _count(nc, EventCancelled.SUBJECT, 1)
        clock.now = EVENT_DAY - timedelta(hours=1)
        assert await send_due_reminders(service.sessions, clock.now) == 0
        assert await _count(nc, ReminderDue.SUBJECT, 0)
        late = await refused(nc, book(event_id, 9))
        assert late[0] == "closed"


async def test_calendar_entries_keep_their_uid_and_raise_sequence_on_each_change(
    settings: Settings, nc: Client
) -> None:
    clock = Clock()
    async with events_service(settings, clock):
        event_id = await published_event(nc)
        await request(nc, book(event_id, 1))
        await request(nc, UpdateEvent(event_id=event_id, venue="Bolton Town Hall"))
        await request(nc, CancelEvent(event_id=event_id))

        await eventually(lambda: _count(nc, BookingCancelled.SUBJECT, 1))
        entries = [
            CalendarEntry.model_validate(e.data["calendar"])
            for subject in (
                BookingConfirmed.SUBJECT,
                EventChanged.SUBJECT,
                BookingCancelled.SUBJECT,
            )
            for e in await facts(nc, subject)
        ]
        parsed = []
        for entry, method in zip(entries, ("REQUEST", "REQUEST", "CANCEL"), strict=True):
            document = Calendar.from_ical(calendar.ics([entry], method=method, now=clock.now))
            (vevent,) = document.walk("VEVENT")
            parsed.append((str(vevent["UID"]), int(vevent["SEQUENCE"]), str(vevent["STATUS"])))
        uid = f"{event_id}@events.vestry"
        assert parsed == [(uid, 0, "CONFIRMED"), (uid, 1, "CONFIRMED"), (uid, 2, "CANCELLED")]
        assert entries[1].location == "Bolton Town Hall"


async def test_feed_lists_upcoming_published_events_as_ics_and_atom(
    settings: Settings, nc: Client
) -> None:
    async with events_service(settings, Clock()):
        first = await published_event(nc, title="Customer service forum")
        second = await published_event(
            nc,
            title="PRINCE2 refresher",
            starts_at=EVENT_DAY - timedelta(days=3),
            ends_at=EVENT_DAY - timedelta(days=3) + timedelta(hours=6),
        )
        await request(nc, event_command(title="Still a draft"))

        ics = await request(nc, EventFeed(format="ics"))
        atom = await request(nc, EventFeed(format="atom"))

        vevents = Calendar.from_ical(ics["content"]).walk("VEVENT")
        assert [str(v["UID"]) for v in vevents] == [
            f"{second}@events.vestry",
            f"{first}@events.vestry",
        ]
        assert atom["media_type"] == "application/atom+xml" and atom["events"] == 2
        assert "PRINCE2 refresher" in atom["content"] and "Still a draft" not in atom["content"]


async def test_booker_tracks_cancels_and_cannot_cancel_after_the_start(
    settings: Settings, nc: Client
) -> None:
    clock = Clock()
    async with events_service(settings, clock):
        event_id = await published_event(nc, capacity=1)
        first = await request(nc, book(event_id, 1, phone="07400 123456", sms=True))
        second = await request(nc, book(event_id, 2, channel="phone"))
        third = await request(nc, book(event_id, 3))
        assert first["phone"] == "+447400123456"

        shown = await request(nc, ShowBooking(reference=third["reference"].lower()))
        assert (shown["status"], shown["position"]) == ("waitlisted", 2)

        cancelled = await request(nc, CancelBooking(reference=first["reference"]))
        assert cancelled["promoted"] == [second["reference"]]
        assert (await request(nc, ShowBooking(reference=third["reference"])))["position"] == 1
        assert (await refused(nc, CancelBooking(reference=first["reference"])))[0] == "conflict"

        clock.now = EVENT_DAY + timedelta(minutes=5)
        code, field, message = await refused(nc, CancelBooking(reference=second["reference"]))
        assert (code, field) == ("closed", "reference") and "has started" in message
        still = await request(nc, ShowBooking(reference=second["reference"]))
        assert still["status"] == "confirmed"
        await eventually(lambda: _count(nc, BookingPromoted.SUBJECT, 1))


async def test_check_in_no_shows_and_the_report(settings: Settings, nc: Client) -> None:
    clock = Clock()
    async with events_service(settings, clock) as (service,):
        event_id = await published_event(nc, capacity=4)
        made = [
            await request(nc, book(event_id, 1, organisation_name="Wigan Council")),
            await request(
                nc, book(event_id, 2, organisation_name="Wigan Council", channel="phone")
            ),
            await request(nc, book(event_id, 3, organisation_name="Bury Council")),
            await request(nc, book(event_id, 4, channel="in-person")),
        ]
        early = await refused(nc, CheckIn(reference=made[0]["reference"]))
        assert early[0] == "closed"

        clock.now = EVENT_DAY - timedelta(minutes=30)
        for booking in made[:3]:
            await request(nc, CheckIn(reference=booking["reference"]))
        again = await request(nc, CheckIn(reference=made[0]["reference"]))
        assert again["attendance"] == "attended"

        clock.now = EVENT_DAY + timedelta(hours=4)
        assert await complete_ended_events(service.sessions, clock.now) == 1
        assert await complete_ended_events(service.sessions, clock.now) == 0

        report = await request(nc, EventReport(event_id=event_id))
        assert (report["booked"], report["attended"], report["no_shows"]) == (4, 3, 1)
        assert report["organisations_attending"] == 2
        assert report["by_channel"] == {"in-person": 1, "phone": 1, "web": 2}
        assert report["event"]["status"] == "completed"
        await eventually(lambda: _count(nc, AttendanceRecorded.SUBJECT, 4))
        outcomes = sorted(e.data["outcome"] for e in await facts(nc, AttendanceRecorded.SUBJECT))
        assert outcomes == ["attended"] * 3 + ["no_show"]
        listed = await request(nc, ListBookings(event_id=event_id))
        assert [b["reference"] for b in listed["bookings"]] == [b["reference"] for b in made]
        assert (await request(nc, ListEvents(status="completed")))["events"][0][
            "event_id"
        ] == event_id


def _raw_book(data: dict[str, Any]) -> bytes:
    envelope = Envelope.wrap(BookPlace(event_id="x", name="x", email="x@example.org"))
    return json.dumps({**envelope.model_dump(mode="json"), "data": data}).encode()


@pytest.mark.parametrize(
    ("change", "code", "field", "words"),
    [
        ({"event_id": "E-NOPE"}, "not_found", "event_id", "no event"),
        ({"email": "p9-at-council"}, "invalid", "email", "email"),
        ({"phone": "0161 23"}, "invalid", "phone", "phone"),
        ({"phone": "call me"}, "invalid", "phone", "phone"),
        ({"sms": True}, "invalid", "sms", "phone"),
        ({"email": "p1@council.example"}, "duplicate", "email", "already holds"),
        ({"channel": "fax"}, "invalid", "channel", "web"),
    ],
)
async def test_bad_booking_is_refused_with_a_structured_error_and_changes_nothing(
    settings: Settings, nc: Client, change: dict[str, Any], code: str, field: str, words: str
) -> None:
    async with events_service(settings, Clock()) as (service,):
        event_id = await published_event(nc)
        await request(nc, book(event_id, 1))
        before = await outbox_rows(service)

        data = {"event_id": event_id, "name": "Person 9", "email": "p9@council.example", **change}
        reply = await request_raw(nc, BookPlace.SUBJECT, _raw_book(data))

        assert not reply.ok and reply.error is not None
        assert (reply.error.code, reply.error.field) == (code, field), reply.error
        assert words in reply.error.message
        assert await outbox_rows(service) == before
        assert (await request(nc, ShowEvent(event_id=event_id)))["confirmed"] == 1


async def test_booking_outside_the_window_is_refused(settings: Settings, nc: Client) -> None:
    clock = Clock()
    async with events_service(settings, clock) as (service,):
        opens = clock.now + timedelta(days=2)
        event_id = await published_event(nc, booking_opens_at=opens)
        code, _, message = await refused(nc, book(event_id, 1))
        assert code == "closed" and "not opened" in message
        clock.now = EVENT_DAY - timedelta(minutes=1)
        await request(nc, book(event_id, 2))
        clock.now = EVENT_DAY
        code, _, message = await refused(nc, book(event_id, 3))
        assert code == "closed" and "closed" in message
        async with service.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(Booking)) == 1


async def test_capacity_below_confirmed_is_refused_and_a_rise_promotes_at_once(
    settings: Settings, nc: Client
) -> None:
    async with events_service(settings, Clock()) as (service,):
        event_id = await published_event(nc, capacity=2)
        for n in range(4):
            await request(nc, book(event_id, n))
        before = await outbox_rows(service)

        code, field, message = await refused(nc, UpdateEvent(event_id=event_id, capacity=1))
        assert (code, field) == ("invalid", "capacity") and "below the 2 places" in message
        assert await outbox_rows(service) == before
        shown = await request(nc, ShowEvent(event_id=event_id))
        assert (shown["capacity"], shown["waiting"]) == (2, 2)

        risen = await request(nc, UpdateEvent(event_id=event_id, capacity=3))
        assert len(risen["promoted"]) == 1 and risen["waiting"] == 1 and not risen["moved"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"ends_at": EVENT_DAY - timedelta(hours=1)}, "ends_at"),
        (
            {
                "starts_at": datetime(2026, 1, 1, 10, tzinfo=UTC),
                "ends_at": datetime(2026, 1, 1, 12, tzinfo=UTC),
            },
            "starts_at",
        ),
        ({"venue": None}, "venue"),
        ({"booking_closes_at": EVENT_DAY + timedelta(hours=1)}, "booking_closes_at"),
    ],
)
async def test_an_event_that_breaks_a_rule_is_not_created(
    settings: Settings, nc: Client, fields: dict[str, Any], field: str
) -> None:
    async with events_service(settings, Clock()) as (service,):
        code, got, _ = await refused(nc, event_command(**fields))
        assert (code, got) == ("invalid", field)
        assert (await request(nc, ListEvents()))["events"] == []
        async with service.sessions() as session:
            assert await unsent_count(session) == 0


async def _count(nc: Client, subject: str, expected: int) -> bool:
    return len(await facts(nc, subject)) == expected


async def _outbox_empty(service: Service) -> bool:
    async with service.sessions() as session:
        return await unsent_count(session) == 0


async def _refusal_case(nc: Client, clock: Clock, case: str) -> tuple[Any, str]:
    """Set the scene for one refusal; returns the refused command and what must not change."""
    if case == "publish_twice":
        return PublishEvent(event_id=await published_event(nc)), "event"
    if case == "update_cancelled":
        event_id = await published_event(nc)
        await request(nc, CancelEvent(event_id=event_id))
        return UpdateEvent(event_id=event_id, title="Back on"), "event"
    if case == "move_into_past":
        event_id = await published_event(nc)
        past = clock.now - timedelta(days=1)
        return UpdateEvent(
            event_id=event_id, starts_at=past, ends_at=past + timedelta(hours=1)
        ), "event"
    if case == "full_without_waiting_list":
        event_id = await published_event(nc, capacity=1, waiting_list=False)
        await request(nc, book(event_id, 1))
        return book(event_id, 2), "event"
    if case == "over_organisation_limit":
        event_id = await published_event(nc, places_per_organisation=2)
        for n in (1, 2):
            await request(nc, book(event_id, n, organisation_name="Wyre Council"))
        return book(event_id, 3, organisation_name="WYRE COUNCIL "), "event"
    if case == "draft_not_bookable":
        created = await request(nc, event_command())
        return book(created["event_id"], 1), "event"
    if case == "cancel_unknown_booking":
        return CancelBooking(reference="BZZZZZZZ"), "nothing"
    if case == "check_in_waiting":
        event_id = await published_event(nc, capacity=1)
        await request(nc, book(event_id, 1))
        waiting = await request(nc, book(event_id, 2))
        clock.now = EVENT_DAY
        return CheckIn(reference=waiting["reference"]), "event"
    if case == "list_bookings_unknown_event":
        return ListBookings(event_id="ENOPE00"), "nothing"
    if case == "report_unknown_event":
        return EventReport(event_id="ENOPE00"), "nothing"
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "code", "field"),
    [
        ("publish_twice", "conflict", "event_id"),
        ("update_cancelled", "closed", "event_id"),
        ("move_into_past", "invalid", "starts_at"),
        ("full_without_waiting_list", "full", None),
        ("over_organisation_limit", "over_limit", "organisation_name"),
        ("draft_not_bookable", "closed", None),
        ("cancel_unknown_booking", "not_found", "reference"),
        ("check_in_waiting", "conflict", "reference"),
        ("list_bookings_unknown_event", "not_found", "event_id"),
        ("report_unknown_event", "not_found", "event_id"),
    ],
)
async def test_each_refusal_names_its_reason_and_changes_nothing(
    settings: Settings, nc: Client, case: str, code: str, field: str | None
) -> None:
    clock = Clock()
    async with events_service(settings, clock) as (service,):
        command, _ = await _refusal_case(nc, clock, case)
        before = await outbox_rows(service), await _store_snapshot(service)

        got = await refused(nc, command)

        assert got[:2] == (code, field), got
        assert (await outbox_rows(service), await _store_snapshot(service)) == before


async def test_a_no_show_cannot_check_in_afterwards(settings: Settings, nc: Client) -> None:
    clock = Clock()
    async with events_service(settings, clock) as (service,):
        event_id = await published_event(nc)
        made = await request(nc, book(event_id, 1))
        clock.now = EVENT_DAY + timedelta(hours=5)
        await complete_ended_events(service.sessions, clock.now)
        code, _, message = await refused(nc, CheckIn(reference=made["reference"]))
        assert code == "conflict" and "no-show" in message


async def test_a_tier_change_keeps_the_member_price(
    settings: Settings, nc: Client, streams: None
) -> None:
    async with events_service(settings, Clock()) as (service,):
        await membership(nc, "m-bury", "Bury Council")
        await membership(
            nc,
            "m-bury",
            "Bury Council",
            MembershipChanged(
                membership_id="ms-m-bury",
                member_id="m-bury",
                member_name="Bury Council",
                old_tier="district",
                new_tier="upper-tier",
                effective_on=date(2026, 10, 1),
            ),
        )
        await eventually(lambda: sum(c.stats.applied for c in service.consumers) == 2)
        async with service.sessions() as session:
            (view,) = await events_store.memberships(session)
        assert (view.tier, view.starts_on, view.ends_on) == ("upper-tier", date(2026, 4, 1), None)
        event_id = await published_event(nc)
        reply = await request(nc, book(event_id, 1, member_id="m-bury"))
        assert (reply["member_price"], reply["price_minor"]) == (True, 0)


async def _store_snapshot(service: Service) -> tuple[Any, ...]:
    async with service.sessions() as session:
        events = [
            (e.id, e.status, e.title, e.starts_at, e.capacity, e.confirmed, e.sequence)
            for e in await events_store.events(session)
        ]
        bookings = list(
            await session.execute(select(Booking.reference, Booking.status, Booking.attendance))
        )
    return tuple(events), tuple(map(tuple, bookings))
