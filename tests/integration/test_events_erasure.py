"""A person's rights in the events service: erased on request (their bookings kept,
redacted, for reports), exported on request, and redacted anyway once an event ended
longer ago than the retention period; an erased booker is never written to again."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from nats.aio.client import Client
from sqlalchemy import MetaData, func, select

from contracts import Envelope, Message
from contracts.events_v1 import (
    BookingCancelled,
    BookingChargeable,
    BookingPromoted,
    BookPlace,
    CancelBooking,
    CancelEvent,
    CheckIn,
    EventChanged,
    EventReport,
    ReminderDue,
    ShowBooking,
    UpdateEvent,
)
from contracts.money import Money
from contracts.people_v1 import (
    ExportPersonFromEvents,
    PersonErasedFromEvents,
    PersonErasureRequested,
)
from contracts.personal import ERASED_EMAIL, ERASED_NAME, is_erased_email
from contracts.subscriptions_v1 import MembershipStarted
from kernel.commands import request
from kernel.runtime import Service
from kernel.settings import Settings
from kernel.store import outbox_table
from services.events.store import Booking, Reminder
from services.events.timekeeper import redact_past_bookings, send_due_reminders
from tests.conftest import eventually
from tests.events_support import EVENT_DAY, Clock, events_service, facts, published_event

NAME = "Jo Bloggs"
EMAIL = "jo.bloggs@bury.example.gov.uk"
HOME_EMAIL = "jo@home.example"  # the same person, known by their phone
PHONE = "07400 123456"
E164 = "+447400123456"
TRACES = (NAME, "bloggs", HOME_EMAIL, E164, "7400 123456")


@pytest.fixture
def store_services() -> tuple[str, ...]:
    return ("events",)


def jo(event_id: str, **fields: Any) -> BookPlace:
    return BookPlace(event_id=event_id, name=NAME, email=EMAIL.upper(), **fields)


def sam(event_id: str, **fields: Any) -> BookPlace:
    return BookPlace(event_id=event_id, name="Sam Other", email="sam@wigan.example", **fields)


async def put(nc: Client, fact: Message) -> None:
    """Put a fact in its stream, as its owner (subscriptions, the operator's CLI) would."""
    envelope = Envelope.wrap(fact)
    await nc.jetstream().publish(
        fact.SUBJECT, envelope.to_bytes(), headers={"Nats-Msg-Id": envelope.id}
    )


async def erase(nc: Client, email: str = EMAIL, phone: str | None = None) -> dict[str, Any]:
    """Ask for a person to be erased; the events service's answer."""
    erasure_id = str(uuid.uuid4())
    await put(nc, PersonErasureRequested(erasure_id=erasure_id, email=email, phone=phone))

    async def answer() -> dict[str, Any] | None:
        for fact in await facts(nc, PersonErasedFromEvents.SUBJECT):
            if fact.data["erasure_id"] == erasure_id:
                return fact.data
        return None

    return await eventually(answer, what=f"events answers erasure {erasure_id}")


async def traces_in_store(service: Service) -> list[str]:
    """Every text value in any table of the store that names the person (in any case).

    The outbox's payloads are bytes, sealed per person by the shared runtime, and so
    not searched here."""
    metadata = MetaData()
    found = []
    async with service.engine.connect() as connection:
        await connection.run_sync(metadata.reflect)
        for table in metadata.sorted_tables:
            for row in await connection.execute(select(table)):
                for column, value in row._mapping.items():
                    if isinstance(value, str) and any(t.lower() in value.lower() for t in TRACES):
                        found.append(f"{table.name}.{column}: {value}")
    return found


async def pending_reminders(service: Service, references: list[str]) -> int:
    async with service.sessions() as session:
        return (
            await session.scalar(
                select(func.count())
                .select_from(Reminder)
                .join(Booking, Booking.id == Reminder.booking_id)
                .where(Booking.reference.in_(references), Reminder.status == "pending")
            )
            or 0
        )


async def outbox_rows(service: Service) -> int:
    async with service.sessions() as session:
        return await session.scalar(select(func.count()).select_from(outbox_table)) or 0


@dataclass
class Scene:
    """Jo's bookings on four events, and Sam's beside them."""

    member_event: str  # Jo confirmed as Bury's member, with a phone and SMS
    paid_event: str  # Jo waited behind Sam, then got Sam's place (a paid place)
    dropped_event: str  # Jo booked and cancelled
    home_event: str  # Jo booked from home, the same phone
    jo: dict[str, str]  # reference by event
    sam: str  # Sam's reference on the member event


async def scene(nc: Client, service: Service, clock: Clock) -> Scene:
    await put(
        nc,
        MembershipStarted(
            membership_id="ms-bury",
            member_id="m-bury",
            member_name="Bury Council",
            tier="district",
            billing_email="ap@bury.example.gov.uk",
            starts_on=date(2026, 4, 1),
        ),
    )
    await eventually(lambda: sum(c.stats.applied for c in service.consumers) >= 1)
    member_event = await published_event(nc, title="Lean reviews", capacity=10)
    paid_event = await published_event(
        nc,
        title="Service design",
        capacity=1,
        starts_at=EVENT_DAY + timedelta(days=7),
        ends_at=EVENT_DAY + timedelta(days=7, hours=3),
    )
    dropped_event = await published_event(nc, title="Data for councillors")
    home_event = await published_event(nc, title="Open data day")

    jo_member = await request(nc, jo(member_event, member_id="m-bury", phone=PHONE, sms=True))
    sam_member = await request(nc, sam(member_event, organisation_name="Wigan Council"))
    sam_paid = await request(nc, sam(paid_event))
    jo_paid = await request(
        nc, jo(paid_event, organisation_name="Bury Voluntary Action", channel="phone")
    )
    assert jo_paid["status"] == "waitlisted"
    clock.advance(hours=2)
    await request(nc, CancelBooking(reference=sam_paid["reference"]))  # Jo is promoted
    jo_dropped = await request(nc, jo(dropped_event))
    await request(nc, CancelBooking(reference=jo_dropped["reference"]))
    jo_home = await request(
        nc, BookPlace(event_id=home_event, name="J. Bloggs", email=HOME_EMAIL, phone=E164)
    )
    return Scene(
        member_event,
        paid_event,
        dropped_event,
        home_event,
        jo={
            member_event: jo_member["reference"],
            paid_event: jo_paid["reference"],
            dropped_event: jo_dropped["reference"],
            home_event: jo_home["reference"],
        },
        sam=sam_member["reference"],
    )


async def test_an_erased_persons_bookings_keep_their_counts_but_name_nobody(
    store_settings: Settings, nc: Client, streams: None
) -> None:
    clock = Clock()
    async with events_service(store_settings, clock) as (service,):
        jo_at = await scene(nc, service, clock)
        events = list(jo_at.jo)
        before = {e: await request(nc, ShowBooking(reference=jo_at.jo[e])) for e in events}
        reports = {e: await request(nc, EventReport(event_id=e)) for e in events}
        assert await pending_reminders(service, [jo_at.jo[jo_at.member_event]]) == 2

        answer = await erase(nc, EMAIL.title(), phone=PHONE)

        assert answer["erased"] == {"bookings": 4} and answer["kept"] == {}
        for event_id, reference in jo_at.jo.items():
            after = await request(nc, ShowBooking(reference=reference))
            assert after["name"] == ERASED_NAME
            assert is_erased_email(after["email"])
            assert (after["phone"], after["sms"]) == (None, False)
            kept = ("status", "channel", "member_id", "organisation_name", "price_minor")
            assert {k: after[k] for k in kept} == {k: before[event_id][k] for k in kept}
            report = await request(nc, EventReport(event_id=event_id))
            assert report == reports[event_id]
        sams = await request(nc, ShowBooking(reference=jo_at.sam))
        assert (sams["name"], sams["email"]) == ("Sam Other", "sam@wigan.example")
        assert await pending_reminders(service, list(jo_at.jo.values())) == 0
        assert await traces_in_store(service) == []

        again = await erase(nc, EMAIL, phone=PHONE)
        assert again["erased"] == {}
        stand_in = await erase(nc, ERASED_EMAIL)
        assert stand_in["erased"] == {}
        assert (await request(nc, ShowBooking(reference=jo_at.sam)))["name"] == "Sam Other"


async def test_an_erased_booker_hears_nothing_of_reminders_a_move_or_a_cancellation(
    settings: Settings, nc: Client
) -> None:
    clock = Clock()
    async with events_service(settings, clock) as (service,):
        event_id = await published_event(nc, capacity=5)
        jos = await request(nc, jo(event_id, phone=PHONE, sms=True))
        sams = await request(nc, sam(event_id))
        await erase(nc)

        later = EVENT_DAY + timedelta(days=14)
        await request(
            nc, UpdateEvent(event_id=event_id, starts_at=later, ends_at=later + timedelta(hours=3))
        )
        (changed,) = await eventually(lambda: facts(nc, EventChanged.SUBJECT))
        assert [a["reference"] for a in changed.data["attendees"]] == [sams["reference"]]
        assert await pending_reminders(service, [jos["reference"]]) == 0

        clock.now = later - timedelta(hours=23)  # past both reminders of the moved event
        assert await send_due_reminders(service.sessions, clock.now) == 2  # Sam's alone
        reminded = await eventually(lambda: facts(nc, ReminderDue.SUBJECT))
        assert {r.data["reference"] for r in reminded} == {sams["reference"]}

        await request(nc, CancelEvent(event_id=event_id, reason="The venue flooded."))
        cancelled = await eventually(
            lambda: _at_least(nc, BookingCancelled.SUBJECT, 2), what="both bookings cancelled"
        )
        told = {c.data["reference"]: c.data["booker"] for c in cancelled}
        assert told[jos["reference"]] is None  # nobody to tell, but billing still hears
        assert told[sams["reference"]]["email"] == "sam@wigan.example"


async def test_an_erased_waiting_booker_still_takes_a_freed_place_under_the_stand_ins(
    settings: Settings, nc: Client
) -> None:
    clock = Clock()
    async with events_service(settings, clock) as (service,):
        event_id = await published_event(nc, capacity=1, non_member_price=Money(amount_minor=9500))
        sams = await request(nc, sam(event_id))
        jos = await request(nc, jo(event_id, phone=PHONE))
        assert jos["status"] == "waitlisted"
        await erase(nc)

        clock.advance(hours=1)
        cancelled = await request(nc, CancelBooking(reference=sams["reference"]))

        assert cancelled["promoted"] == [jos["reference"]]
        shown = await request(nc, ShowBooking(reference=jos["reference"]))
        assert (shown["status"], shown["name"]) == ("confirmed", ERASED_NAME)
        (promoted,) = await eventually(lambda: facts(nc, BookingPromoted.SUBJECT))
        assert promoted.data["booker"]["name"] == ERASED_NAME
        assert is_erased_email(promoted.data["booker"]["email"])
        assert promoted.data["booker"]["phone"] is None
        charged = await eventually(lambda: _at_least(nc, BookingChargeable.SUBJECT, 2))
        jo_charged = [c for c in charged if c.data["reference"] == jos["reference"]]
        assert jo_charged[0].data["booker_name"] == ERASED_NAME
        assert is_erased_email(jo_charged[0].data["booker_email"])
        assert await pending_reminders(service, [jos["reference"]]) == 0
        assert await traces_in_store(service) == []


async def test_the_export_gives_every_booking_of_the_person_and_nobody_elses(
    store_settings: Settings, nc: Client, streams: None
) -> None:
    clock = Clock()
    async with events_service(store_settings, clock) as (service,):
        jo_at = await scene(nc, service, clock)

        by_email = await request(nc, ExportPersonFromEvents(email=EMAIL.upper()))
        by_both = await request(nc, ExportPersonFromEvents(email=EMAIL, phone=PHONE))

        assert by_email["service"] == "events"
        references = [b["reference"] for b in by_email["records"]["bookings"]]
        assert sorted(references) == sorted(
            jo_at.jo[e] for e in (jo_at.member_event, jo_at.paid_event, jo_at.dropped_event)
        )
        bookings = {b["reference"]: b for b in by_both["records"]["bookings"]}
        assert set(bookings) == set(jo_at.jo.values())
        member = bookings[jo_at.jo[jo_at.member_event]]
        assert member == {
            "reference": jo_at.jo[jo_at.member_event],
            "event_id": jo_at.member_event,
            "event_title": "Lean reviews",
            "event_starts_at": EVENT_DAY.isoformat(),
            "status": "confirmed",
            "name": NAME,
            "email": EMAIL,
            "phone": E164,
            "sms": True,
            "channel": "web",
            "organisation_name": "Bury Council",
            "member_id": "m-bury",
            "price": "0.00",
            "currency": "GBP",
            "member_price": True,
            "booked_at": member["booked_at"],
            "confirmed_at": member["booked_at"],
            "promoted_at": None,
            "cancelled_at": None,
            "cancelled_reason": None,
            "attendance": None,
            "attendance_recorded_at": None,
        }
        paid = bookings[jo_at.jo[jo_at.paid_event]]
        assert (paid["price"], paid["member_price"], paid["channel"]) == ("95.00", False, "phone")
        assert paid["promoted_at"] is not None and paid["promoted_at"] > paid["booked_at"]
        dropped = bookings[jo_at.jo[jo_at.dropped_event]]
        assert (dropped["status"], dropped["cancelled_reason"]) == ("cancelled", "booker")
        assert dropped["cancelled_at"] is not None
        home = bookings[jo_at.jo[jo_at.home_event]]
        assert (home["email"], home["name"]) == (HOME_EMAIL, "J. Bloggs")
        reminders = by_both["records"]["reminders"]
        assert {r["reference"] for r in reminders} == set(jo_at.jo.values())
        dropped_reminders = [r for r in reminders if r["reference"] == dropped["reference"]]
        assert {r["status"] for r in dropped_reminders} == {"void"}

        clock.now = EVENT_DAY - timedelta(minutes=30)
        await request(nc, CheckIn(reference=jo_at.jo[jo_at.member_event]))
        attended = await request(nc, ExportPersonFromEvents(email=EMAIL))
        (checked_in,) = [
            b
            for b in attended["records"]["bookings"]
            if b["reference"] == jo_at.jo[jo_at.member_event]
        ]
        assert checked_in["attendance"] == "attended"

        nobody = await request(nc, ExportPersonFromEvents(email="nobody@nowhere.example"))
        assert nobody == {"service": "events", "records": {}}
        await erase(nc, EMAIL, phone=PHONE)
        gone = await request(nc, ExportPersonFromEvents(email=EMAIL, phone=PHONE))
        assert gone == {"service": "events", "records": {}}


async def test_bookings_are_redacted_once_their_event_ended_longer_ago_than_the_retention(
    store_settings: Settings, nc: Client
) -> None:
    clock = Clock()
    async with events_service(store_settings, clock) as (service,):
        past = await published_event(nc, title="Last winter's forum")
        recent = await published_event(
            nc,
            title="Spring forum",
            starts_at=EVENT_DAY + timedelta(days=60),
            ends_at=EVENT_DAY + timedelta(days=60, hours=3),
        )
        old = [await request(nc, jo(past, phone=PHONE, sms=True)), await request(nc, sam(past))]
        new = await request(nc, jo(recent))
        report = await request(nc, EventReport(event_id=past))
        # The past event ended two months ago; the recent one yesterday.
        clock.now = EVENT_DAY + timedelta(days=61)
        published = await outbox_rows(service)

        assert await redact_past_bookings(service.sessions, clock.now, retention_days=0) == 0
        assert await redact_past_bookings(service.sessions, clock.now, retention_days=30) == 2
        assert await redact_past_bookings(service.sessions, clock.now, retention_days=30) == 0

        for booking in old:
            shown = await request(nc, ShowBooking(reference=booking["reference"]))
            assert shown["name"] == ERASED_NAME and is_erased_email(shown["email"])
            assert (shown["phone"], shown["sms"], shown["status"]) == (None, False, "confirmed")
        assert (await request(nc, ShowBooking(reference=new["reference"])))["name"] == NAME
        assert await request(nc, EventReport(event_id=past)) == report
        assert await outbox_rows(service) == published  # nothing said of it, to anyone

        # Jo's data outlives the past event only on the recent one, until that ends too.
        clock.now += timedelta(days=30)
        assert await redact_past_bookings(service.sessions, clock.now, retention_days=30) == 1
        assert await traces_in_store(service) == []


async def _at_least(nc: Client, subject: str, count: int) -> list[Envelope] | None:
    found = await facts(nc, subject)
    return found if len(found) >= count else None
