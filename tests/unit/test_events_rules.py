"""Events' rules without a broker or a store: places, the waiting list, prices,
reminders, phones, schedules, reports and the calendar documents."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree as etree

import pytest
from icalendar import Calendar

from contracts.events_v1 import CalendarEntry
from services.events import calendar, domain
from services.events.domain.booking import Opening

NOW = datetime(2027, 1, 11, 9, 0, tzinfo=UTC)
START = datetime(2027, 2, 10, 10, 0, tzinfo=UTC)

OPEN = Opening(
    status="published",
    starts_at=START,
    booking_opens_at=None,
    booking_closes_at=START,
    capacity=2,
    confirmed=0,
    waiting_list=True,
    places_per_organisation=None,
)


def decide(opening: Opening = OPEN, **kwargs: object) -> str:
    args = {"now": NOW, "already_booked": False, "organisation_places": 0, **kwargs}
    return domain.decide_place(opening, **args)  # type: ignore[arg-type]


def test_places_are_confirmed_until_capacity_then_waitlisted() -> None:
    assert decide(replace(OPEN, confirmed=1)) == "confirmed"
    assert decide(replace(OPEN, confirmed=2)) == "waitlisted"


@pytest.mark.parametrize(
    ("opening", "kwargs", "code", "field"),
    [
        (replace(OPEN, status="draft"), {}, "closed", None),
        (replace(OPEN, status="cancelled"), {}, "closed", None),
        (replace(OPEN, booking_opens_at=NOW + timedelta(days=1)), {}, "closed", None),
        (replace(OPEN, booking_closes_at=NOW), {}, "closed", None),
        (replace(OPEN, confirmed=2, waiting_list=False), {}, "full", None),
        (OPEN, {"already_booked": True}, "duplicate", "email"),
        (
            replace(OPEN, places_per_organisation=3),
            {"organisation_places": 3},
            "over_limit",
            "organisation_name",
        ),
    ],
)
def test_a_booking_is_refused_for_a_reason_the_booker_can_act_on(
    opening: Opening, kwargs: dict[str, object], code: str, field: str | None
) -> None:
    with pytest.raises(domain.BookingRefused) as refused:
        decide(opening, **kwargs)
    assert (refused.value.code, refused.value.field) == (code, field)


def test_freed_places_go_to_as_many_waiting_as_fit() -> None:
    assert domain.places_to_promote(capacity=50, confirmed=47, waiting=150) == 3
    assert domain.places_to_promote(capacity=50, confirmed=47, waiting=1) == 1
    assert domain.places_to_promote(capacity=50, confirmed=50, waiting=9) == 0


def test_member_price_for_members_only() -> None:
    assert domain.price_for(is_member=True, member_price=0, non_member_price=9500) == (0, True)
    assert domain.price_for(is_member=False, member_price=0, non_member_price=9500) == (
        9500,
        False,
    )


def test_booker_may_cancel_until_the_start_but_not_after() -> None:
    domain.cancellation_allowed(now=START - timedelta(seconds=1), starts_at=START)
    with pytest.raises(domain.BookingRefused, match="has started") as refused:
        domain.cancellation_allowed(now=START, starts_at=START)
    assert refused.value.code == "closed"


def test_reminders_at_seven_days_and_one_day_and_none_already_late() -> None:
    slots = domain.reminder_slots(START, now=NOW)
    assert [(s.hours_before, s.due_at) for s in slots] == [
        (24, START - timedelta(days=1)),
        (168, START - timedelta(days=7)),
    ]
    late = domain.reminder_slots(START, now=START - timedelta(days=3))
    assert [s.hours_before for s in late] == [24]


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("07400 123456", "+447400123456"),
        ("+44 (0)7400 123456", "+447400123456"),
        ("+33 6 12 34 56 78", "+33612345678"),
    ],
)
def test_mobile_numbers_become_e164_with_gb_by_default(raw: str, e164: str) -> None:
    assert domain.normalise_phone(raw) == e164


@pytest.mark.parametrize("raw", ["12345", "phone me", "+44 7700", "0770090012399"])
def test_malformed_phone_numbers_are_refused(raw: str) -> None:
    with pytest.raises(domain.InvalidPhone):
        domain.normalise_phone(raw)


@pytest.mark.parametrize("landline", ["0161 234 5678", "+44 20 7946 0000", "+33 1 23 45 67 89"])
def test_a_landline_given_as_the_mobile_is_refused(landline: str) -> None:
    """SMS go to this number: a landline would take the opt-in and never get a text."""
    with pytest.raises(domain.InvalidPhone, match="not a mobile"):
        domain.normalise_phone(landline)


def test_london_wall_clock_becomes_utc_across_summer_time() -> None:
    assert domain.to_utc(datetime(2027, 6, 1, 10, 0)) == datetime(2027, 6, 1, 9, 0, tzinfo=UTC)
    assert domain.to_utc(datetime(2027, 1, 5, 10, 0)) == datetime(2027, 1, 5, 10, 0, tzinfo=UTC)
    assert domain.london(datetime(2027, 6, 1, 9, 0, tzinfo=UTC)).hour == 10


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ends_at": START}, "ends_at"),
        ({"booking_closes_at": START + timedelta(hours=1)}, "booking_closes_at"),
        ({"booking_opens_at": START}, "booking_opens_at"),
        ({"member_price": -1}, "member_price"),
        ({"venue": None}, "venue"),
    ],
)
def test_an_event_that_breaks_a_rule_names_the_field(
    changes: dict[str, object], field: str
) -> None:
    details: dict[str, object] = {
        "starts_at": START,
        "ends_at": START + timedelta(hours=2),
        "booking_opens_at": None,
        "booking_closes_at": START,
        "member_price": 0,
        "non_member_price": 100,
        "venue": "Preston",
        "online_url": None,
        **changes,
    }
    with pytest.raises(domain.EventInvalid) as invalid:
        domain.check_event(**details)  # type: ignore[arg-type]
    assert invalid.value.field == field


def test_capacity_cannot_fall_below_confirmed_places() -> None:
    domain.check_capacity_change(40, 40)
    with pytest.raises(domain.EventInvalid, match="below the 41 places") as invalid:
        domain.check_capacity_change(40, 41)
    assert invalid.value.field == "capacity"


@dataclass
class Line:
    status: str
    attendance: str | None
    channel: str
    organisation_key: str | None


def test_report_counts_attendance_and_different_organisations() -> None:
    report = domain.attendance_report(
        [
            Line("confirmed", "attended", "web", "m-1"),
            Line("confirmed", "attended", "phone", "m-1"),
            Line("confirmed", "attended", "web", "wigan council"),
            Line("confirmed", "no_show", "in-person", "m-2"),
            Line("waitlisted", None, "web", None),
            Line("cancelled", None, "web", "m-3"),
        ]
    )
    assert report == {
        "booked": 4,
        "waiting": 1,
        "cancelled": 1,
        "attended": 3,
        "no_shows": 1,
        "not_yet_recorded": 0,
        "organisations_attending": 2,
        "by_channel": {"in-person": 1, "phone": 1, "web": 3},
    }


def entry(sequence: int, status: str = "CONFIRMED") -> CalendarEntry:
    return CalendarEntry(
        uid="E1@events.vestry",
        sequence=sequence,
        summary="Information governance forum",
        description="Data sharing agreements",
        starts_at=START,
        ends_at=START + timedelta(hours=2),
        location="Preston",
        status=status,  # type: ignore[arg-type]
    )


def test_ics_parses_with_icalendar_keeping_uid_and_sequence() -> None:
    parsed = Calendar.from_ical(calendar.ics([entry(2, "CANCELLED")], method="CANCEL", now=NOW))
    (event,) = parsed.walk("VEVENT")
    assert str(parsed["METHOD"]) == "CANCEL"
    assert str(event["UID"]) == "E1@events.vestry"
    assert int(event["SEQUENCE"]) == 2
    assert str(event["STATUS"]) == "CANCELLED"
    assert event.decoded("DTSTART") == START


def test_atom_feed_is_well_formed_with_one_entry_per_event() -> None:
    xml = calendar.atom(
        [("E1", entry(0), NOW), ("E2", entry(1), NOW)],
        title="Partnership events",
        url="https://events.example/events",
        author="North West Partnership",
        now=NOW,
    )
    root = etree.fromstring(xml)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    ids = [e.text for e in root.findall("a:entry/a:id", ns)]
    assert ids == ["urn:vestry:event:E1", "urn:vestry:event:E2"]
    assert root.find("a:title", ns).text == "Partnership events"


def test_atom_feed_passes_feedparser_with_author_self_link_and_site_links() -> None:
    """RFC 4287 as an independent parser reads it: an author, rel=self, entries linking
    to the site's event pages; a control character in a title does not break it."""
    import feedparser

    with_control = entry(0).model_copy(update={"summary": "Forum\x0b meeting\x00"})
    xml = calendar.atom(
        [("E1", with_control, NOW), ("E2", entry(1), NOW)],
        title="Partnership events",
        url="https://events.example/events",
        author="North West Partnership",
        now=NOW,
    )
    feed = feedparser.parse(xml)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.feed.author == "North West Partnership"
    links = {link.rel: link.href for link in feed.feed.links}
    assert links == {
        "alternate": "https://events.example/events",
        "self": "https://events.example/events.atom",
    }
    assert [e.link for e in feed.entries] == [
        "https://events.example/events/E1",
        "https://events.example/events/E2",
    ]
    assert feed.entries[0].title.startswith("Forum meeting")
