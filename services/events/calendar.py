"""Calendars and feeds, built with maintained libraries: iCalendar (RFC 5545) with
``icalendar``, Atom (RFC 4287) with ``feedgen``."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from feedgen.feed import FeedGenerator
from icalendar import Calendar
from icalendar import Event as VEvent

from contracts.events_v1 import CalendarEntry
from services.events.domain import london

PRODID = "-//Vestry//Events//EN"


def ics(entries: Iterable[CalendarEntry], *, method: str | None = None, now: datetime) -> bytes:
    """An iCalendar document holding one VEVENT per entry.

    ``method`` is ``REQUEST`` or ``CANCEL`` for a booker's attachment (iTIP),
    none for a published feed. Times are written in UTC, which every client
    shows in its own zone; ``X-WR-TIMEZONE`` says the partnership's.
    """
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-timezone", "Europe/London")
    if method:
        calendar.add("method", method)
    for entry in entries:
        event = VEvent()
        event.add("uid", entry.uid)
        event.add("sequence", entry.sequence)
        event.add("dtstamp", now)
        event.add("dtstart", entry.starts_at)
        event.add("dtend", entry.ends_at)
        event.add("summary", entry.summary)
        if entry.description:
            event.add("description", entry.description)
        if entry.location:
            event.add("location", entry.location)
        if entry.url:
            event.add("url", entry.url)
        event.add("status", entry.status)
        calendar.add_component(event)
    return calendar.to_ical()


def atom(
    entries: Iterable[tuple[str, CalendarEntry, datetime]],
    *,
    title: str,
    url: str,
    now: datetime,
) -> bytes:
    """An Atom feed of upcoming events: (event id, entry, last changed) each, soonest first."""
    feed = FeedGenerator()
    feed.id(url)
    feed.title(title)
    feed.link(href=url, rel="alternate")
    feed.language("en-GB")
    feed.updated(now)
    for event_id, entry, changed in reversed(list(entries)):  # feedgen prepends each entry
        item = feed.add_entry()
        item.id(f"urn:vestry:event:{event_id}")
        starts = london(entry.starts_at)
        item.title(f"{entry.summary} — {starts:%a %d %b %Y %H:%M}")
        where = entry.location or entry.url or "online"
        item.summary(f"{starts:%A %d %B %Y, %H:%M}–{london(entry.ends_at):%H:%M}, {where}")
        if entry.description:
            item.content(entry.description, type="text")
        item.link(href=entry.url or f"{url.rstrip('/')}/{event_id}")
        item.updated(changed)
    return feed.atom_str(pretty=True)
