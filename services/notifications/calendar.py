"""The iCalendar (RFC 5545) attachment of a booking message, from the event's calendar
entry, as an iTIP (RFC 5546) message.

A confirmation, a promotion, a change or a reminder is ``METHOD:REQUEST``; a
cancellation is ``METHOD:CANCEL`` with ``STATUS:CANCELLED``. Each names the
partnership as ORGANIZER and the booker as ATTENDEE, as iTIP asks of both.

The events service gives every calendar entry the *event's* UID, the one its public
feed and ``/events/{id}.ics`` keep. An invitation is one booking's, though: a
person who cancels and books again holds two bookings, and a CANCEL of the first
must not hide the second. So each booking's invitations carry a UID of their own,
derived from the event's UID and the booking's reference
(``contracts.calendar.invitation_uid``, which the booker's own page shares), and
the event's SEQUENCE, which the events service only ever raises: a change raises
it for the event, and a booker's cancellation sends it one above the event's, so
a CANCEL always outranks every REQUEST sent for that booking.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any

from icalendar import Calendar, Event, vCalAddress

PRODID = "-//Vestry//Notifications//EN"


@dataclass(frozen=True)
class Party:
    """Someone an invitation names: the organiser or an attendee."""

    name: str
    email: str

    def address(self, **params: Any) -> vCalAddress:
        return vCalAddress.new(self.email, cn=self.name or None, **params)


def organizer_of(mail_from: str, partnership_name: str) -> Party:
    """The partnership as organiser: the address its mail comes from, under its name."""
    display, address = parseaddr(mail_from)
    return Party(name=partnership_name or display, email=address)


def calendar_attachment(
    entry: dict[str, Any],
    *,
    cancel: bool = False,
    uid: str | None = None,
    organizer: Party | None = None,
    attendee: Party | None = None,
    now: datetime | None = None,
) -> bytes:
    """The ``.ics`` bytes for a CalendarEntry as the events service put it on the fact.

    ``uid`` replaces the entry's (the event's) UID: the mailer gives the booking's.
    ``organizer`` and ``attendee`` are what make it a valid iTIP REQUEST or CANCEL;
    the mailer always gives both.
    """
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "CANCEL" if cancel else "REQUEST")
    event = Event()
    event.add("uid", uid or entry["uid"])
    event.add("sequence", int(entry["sequence"]))
    event.add("dtstamp", (now or datetime.now(UTC)).astimezone(UTC))
    event.add("dtstart", _instant(entry["starts_at"]))
    event.add("dtend", _instant(entry["ends_at"]))
    event.add("summary", entry["summary"])
    if entry.get("description"):
        event.add("description", entry["description"])
    if entry.get("location"):
        event.add("location", entry["location"])
    if entry.get("url"):
        event.add("url", entry["url"])
    event.add("status", "CANCELLED" if cancel else entry.get("status", "CONFIRMED"))
    if organizer is not None:
        event.add("organizer", organizer.address())
    if attendee is not None:
        # A confirmed place: accepted already, and no reply is wanted (RSVP=FALSE).
        confirmed = {} if cancel else {"partstat": "ACCEPTED"}
        event.add(
            "attendee",
            attendee.address(cutype="INDIVIDUAL", role="REQ-PARTICIPANT", rsvp=False, **confirmed),
        )
    calendar.add_component(event)
    return calendar.to_ical()


def _instant(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
