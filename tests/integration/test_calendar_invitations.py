"""Every calendar invitation the notifications service mails, collected from real sent mail
as bookers cancel, book again, are promoted, and see their event move, be reminded of
and be cancelled, read by vobject and ical.js and held to iTIP (RFC 5546): a REQUEST has
one ORGANIZER and an ATTENDEE, a CANCEL both too, METHOD matches the MIME part, and
SEQUENCE only rises per UID, so a person's calendar ends showing what is true."""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from datetime import timedelta
from typing import Any

from nats.aio.client import Client

from contracts.events_v1 import (
    BookPlace,
    CancelBooking,
    CancelEvent,
    EventCalendar,
    EventFeed,
    UpdateEvent,
)
from kernel.commands import request
from kernel.settings import Settings
from services.events.timekeeper import send_due_reminders
from services.notifications.app import create_service
from tests.conftest import Mailbox, eventually
from tests.events_support import EVENT_DAY, Clock, events_service, published_event
from tests.itip_support import (
    CalendarClient,
    Invitation,
    invitations,
    itip_problems,
    with_icaljs,
    with_vobject,
)
from tests.notifications_support import quick
from vestry.mailcapture import CapturedMail

ANN = "ann.ahmed@bury.example.gov.uk"
BEN = "ben.bell@wigan.example.gov.uk"
MOVED_TO = EVENT_DAY + timedelta(days=1, hours=1)  # Thu 11 Feb 2027, 11:00 in London (GMT)
INTERNAL_NAMES = re.compile(r"starts_at|ends_at|booking_closes_at|online_url|\(\s*\w+(,\s*\w+)+\)")
# Mails that carry the booking's calendar entry, by the start of their subject.
WITH_CALENDAR = ("Booked", "A place came free", "Changed", "Reminder", "Cancelled")


def book(name: str, email: str, event_id: str) -> BookPlace:
    return BookPlace(event_id=event_id, name=name, email=email)


async def mails(mailbox: Mailbox, count: int, what: str) -> list[CapturedMail]:
    await eventually(lambda: len(mailbox.mails()) >= count, what=what)
    found = mailbox.mails()
    assert len(found) == count, [m.subject for m in found]
    return found


def read_all(sent: list[CapturedMail]) -> list[tuple[CapturedMail, Invitation, dict[str, Any]]]:
    """Each invitation in sending order, as vobject reads it, once ical.js has read them
    all alike; every one keeps the iTIP rules as both parsers read it."""
    found = []
    for mail in sent:
        attached = invitations(mail.message)
        assert len(attached) == (1 if mail.subject.startswith(WITH_CALENDAR) else 0), mail.subject
        found += [(mail, invitation) for invitation in attached]
    by_vobject = [with_vobject(invitation.text) for _, invitation in found]
    by_icaljs = with_icaljs([invitation.text for _, invitation in found])
    for (mail, invitation), vobject_read, icaljs_read in zip(
        found, by_vobject, by_icaljs, strict=True
    ):
        assert itip_problems(invitation, vobject_read) == [], (mail.subject, invitation.text)
        assert itip_problems(invitation, icaljs_read) == [], (mail.subject, invitation.text)
        assert icaljs_read == vobject_read, mail.subject
    return [(m, i, r) for (m, i), r in zip(found, by_vobject, strict=True)]


def sequences_by_uid(read: list[tuple[CapturedMail, Invitation, dict[str, Any]]]) -> dict:
    """UID → [(subject word, METHOD, SEQUENCE)] in sending order."""
    seen: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    for mail, _, document in read:
        (event,) = document["events"]
        seen[event["uid"]].append(
            (mail.subject.split(":")[0], document["method"], event["sequence"])
        )
    return dict(seen)


def assert_sequences_rise(seen: dict[str, list[tuple[str, str, int]]]) -> None:
    """Strictly, message by message, except that a reminder re-sends the entry as it stands
    (the same SEQUENCE as the last change); never down, reminders included."""
    for uid, messages in seen.items():
        numbers = [sequence for _, _, sequence in messages]
        assert numbers == sorted(numbers), (uid, messages)
        changes = [sequence for word, _, sequence in messages if word != "Reminder"]
        assert all(a < b for a, b in itertools.pairwise(changes)), (uid, messages)


def calendars(read: list[tuple[CapturedMail, Invitation, dict[str, Any]]]) -> dict:
    """Each recipient's calendar after every invitation they were sent, in order."""
    kept: dict[str, CalendarClient] = defaultdict(CalendarClient)
    for _, invitation, document in read:
        for event in document["events"]:
            kept[invitation.recipient].receive(document["method"], event)
    return dict(kept)


async def test_a_booker_who_cancels_and_books_again_ends_with_the_event_live_in_their_calendar(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    settings = quick(settings)
    clock = Clock()
    async with events_service(settings, clock) as (events,), create_service(settings).running():
        event_id = await published_event(nc)  # Manchester Town Hall, Wed 10 Feb 2027 10:00
        first = await request(nc, book("Ann Ahmed", ANN, event_id))
        await request(nc, book("Ben Bell", BEN, event_id))
        await mails(mailbox, 2, "two confirmations")
        await request(nc, CancelBooking(reference=first["reference"]))
        await mails(mailbox, 3, "Ann's cancellation")
        again = await request(nc, book("Ann Ahmed", ANN, event_id))
        assert again["status"] == "confirmed" and again["reference"] != first["reference"]
        await mails(mailbox, 4, "Ann's second confirmation")
        await request(
            nc,
            UpdateEvent(
                event_id=event_id,
                starts_at=MOVED_TO,
                ends_at=MOVED_TO + timedelta(hours=3),
                venue="Bolton Town Hall",
            ),
        )
        await mails(mailbox, 6, "the move, to both")
        clock.now = MOVED_TO - timedelta(days=7) + timedelta(minutes=1)
        assert await send_due_reminders(events.sessions, clock.now) == 2
        sent = await mails(mailbox, 8, "two reminders")
        one = await request(nc, EventCalendar(event_id=event_id))
        feed = await request(nc, EventFeed(format="ics"))
        # What Ann's own booking page offers for each of her bookings.
        first_file, again_file = [
            await request(nc, EventCalendar(event_id=event_id, reference=r["reference"]))
            for r in (first, again)
        ]

    sent_first = [(m.to, m.subject.split(":")[0]) for m in sent[:4]]
    # The two first confirmations go out together, in either order.
    assert sorted(sent_first[:2]) == [(ANN, "Booked"), (BEN, "Booked")]
    assert sent_first[2:] == [(ANN, "Cancelled"), (ANN, "Booked")]
    read = read_all(sent)
    seen = sequences_by_uid(read)
    assert_sequences_rise(seen)

    # Ann's two bookings are two invitations; the CANCEL outranks the first one's REQUEST.
    ann_uids = list(dict.fromkeys(d["events"][0]["uid"] for _, i, d in read if i.recipient == ANN))
    assert len(ann_uids) == 2
    assert [(method, n) for _, method, n in seen[ann_uids[0]]] == [("REQUEST", 0), ("CANCEL", 1)]
    assert [(word, method, n) for word, method, n in seen[ann_uids[1]]] == [
        ("Booked", "REQUEST", 0),
        ("Changed", "REQUEST", 1),
        ("Reminder", "REQUEST", 1),
    ]
    # The public calendar keeps the event's own UID, which no invitation carries.
    event_uid = f"{event_id}@events.vestry"
    assert with_vobject(one["content"])["events"][0]["uid"] == event_uid
    assert [e["uid"] for e in with_vobject(feed["content"])["events"]] == [event_uid]
    assert event_uid not in seen and len(seen) == 3  # Ann twice, Ben once

    # What each calendar ends up showing: the event, once, moved.
    for person, name in ((ANN, "Ann Ahmed"), (BEN, "Ben Bell")):
        (live,) = calendars(read)[person].live()
        assert live["dtstart"] == "2027-02-11T11:00:00Z"
        assert live["location"] == "Bolton Town Hall"
        assert live["attendees"][0]["cn"] == name and live["attendees"][0]["partstat"] == "ACCEPTED"
    assert len(calendars(read)[ANN].entries) == 2  # the cancelled one stays cancelled

    # The booking's own file (the booker's page) is its invitations' entry: same UID and
    # never a lower SEQUENCE, so adding it beside them makes no second entry. A cancelled
    # booking's is one above the event's today (the move raised it), as its CANCEL was.
    [cancelled_file] = with_vobject(first_file["content"])["events"]
    [live_file] = with_vobject(again_file["content"])["events"]
    assert (cancelled_file["uid"], cancelled_file["status"], cancelled_file["sequence"]) == (
        ann_uids[0],
        "CANCELLED",
        2,
    )
    assert (live_file["uid"], live_file["status"], live_file["sequence"]) == (
        ann_uids[1],
        "CONFIRMED",
        1,
    )
    assert live_file["dtstart"] == "2027-02-11T11:00:00Z"
    ann = calendars(read)[ANN]
    for added in (live_file, cancelled_file):
        ann.receive("CANCEL" if added["status"] == "CANCELLED" else "REQUEST", added)
    assert len(ann.entries) == 2 and [e["uid"] for e in ann.live()] == [ann_uids[1]]

    # The change in words, without the fields' names.
    for mail in (m for m in sent if m.subject.startswith("Changed")):
        html = mail.message.get_body(preferencelist=("html",)).get_content()
        for text in (mail.text(), html):
            assert (
                "It now starts at 11:00 on Thu 11 February 2027 and ends at 14:00, "
                "was 10:00 on Wed 10 February 2027." in text
            )
            assert "It is now at Bolton Town Hall, was Manchester Town Hall." in text
            assert not INTERNAL_NAMES.search(text), text


async def test_promotion_move_and_cancelled_event_keep_sequence_rising_for_each_booking(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    settings = quick(
        settings,
        mail_from="events@nwp.example.gov.uk",
        partnership_name="North West Partnership",
    )
    async with events_service(settings, Clock()), create_service(settings).running():
        event_id = await published_event(nc, capacity=1)
        first = await request(nc, book("Ann Ahmed", ANN, event_id))
        await request(nc, book("Ben Bell", BEN, event_id))
        await mails(mailbox, 2, "confirmed + waitlisted")
        await request(nc, CancelBooking(reference=first["reference"]))
        await mails(mailbox, 4, "Ann cancelled, Ben promoted")
        await request(nc, UpdateEvent(event_id=event_id, venue="Bolton Town Hall"))
        await mails(mailbox, 5, "Ben told of the move")
        await request(
            nc,
            UpdateEvent(
                event_id=event_id,
                starts_at=MOVED_TO - timedelta(hours=1),
                ends_at=MOVED_TO + timedelta(hours=2),
            ),
        )
        await mails(mailbox, 6, "Ben told of the new time")
        await request(nc, CancelEvent(event_id=event_id, reason="Venue flooded"))
        sent = await mails(mailbox, 7, "Ben told of the cancellation")

    assert [m.subject.split(":")[0] for m in sent if m.to == BEN] == [
        "Waiting list",
        "A place came free",
        "Changed",
        "Changed",
        "Cancelled",
    ]
    read = read_all(sent)
    for mail, _, _ in read:
        assert str(mail.message["From"]) == "North West Partnership <events@nwp.example.gov.uk>"
    seen = sequences_by_uid(read)
    assert_sequences_rise(seen)
    (ben_uid,) = {d["events"][0]["uid"] for _, i, d in read if i.recipient == BEN}
    assert [(method, n) for _, method, n in seen[ben_uid]] == [
        ("REQUEST", 0),
        ("REQUEST", 1),
        ("REQUEST", 2),
        ("CANCEL", 3),
    ]
    kept = calendars(read)
    assert kept[BEN].live() == [] and kept[ANN].live() == []
    assert len(kept[BEN].entries) == 1 and len(kept[ANN].entries) == 1
    moved = next(m for m in sent if m.subject.startswith("Changed") and "11 February" in m.text())
    assert (
        "It now starts at 10:00 on Thu 11 February 2027 and ends at 13:00, "
        "was 10:00 on Wed 10 February 2027." in moved.text()
    )
    venue = next(m for m in sent if m.subject.startswith("Changed") and "Bolton" in m.text())
    assert "It is now at Bolton Town Hall, was Manchester Town Hall." in venue.text()
