"""The iCalendar (RFC 5545) attachment of a booking message, from the event's calendar entry.

A confirmation or a change is ``METHOD:REQUEST``; a cancellation is
``METHOD:CANCEL`` with ``STATUS:CANCELLED``. The UID stays the event's and
SEQUENCE rises with each change, so calendar clients replace the entry.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from icalendar import Calendar, Event


def calendar_attachment(entry: dict[str, Any], *, cancel: bool = False) -> bytes:
    """The ``.ics`` bytes for a CalendarEntry as the events service put it on the fact."""
    calendar = Calendar()
    calendar.add("prodid", "-//Vestry//Notifications//EN")
    calendar.add("version", "2.0")
    calendar.add("method", "CANCEL" if cancel else "REQUEST")
    event = Event()
    event.add("uid", entry["uid"])
    event.add("sequence", int(entry["sequence"]))
    event.add("summary", entry["summary"])
    if entry.get("description"):
        event.add("description", entry["description"])
    event.add("dtstart", _instant(entry["starts_at"]))
    event.add("dtend", _instant(entry["ends_at"]))
    event.add("dtstamp", datetime.now(UTC))
    if entry.get("location"):
        event.add("location", entry["location"])
    if entry.get("url"):
        event.add("url", entry["url"])
    event.add("status", "CANCELLED" if cancel else entry.get("status", "CONFIRMED"))
    calendar.add_component(event)
    return calendar.to_ical()


def _instant(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
