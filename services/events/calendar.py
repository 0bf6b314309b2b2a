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
    author: str,
    now: datetime,
) -> bytes:
    """An Atom feed of upcoming events: (event id, entry, last changed) each, soonest first.

    ``url`` is the programme's page on the public site; every entry links to its
    event's page there (an online meeting's own address is its ``related`` link),
    and the feed names itself at ``url``.atom.
    """
    site = url.rstrip("/")
    feed = FeedGenerator()
    feed.id(site)
    feed.title(title)
    feed.author({"name": author})
    feed.link(href=site, rel="alternate")
    feed.link(href=f"{site}.atom", rel="self")
    feed.language("en-GB")
    feed.updated(now)
    for event_id, entry, changed in reversed(list(entries)):  # feedgen prepends each entry
        item = feed.add_entry()
        item.id(f"urn:vestry:event:{event_id}")
        starts = london(entry.starts_at)
        item.title(printable(f"{entry.summary} — {starts:%a %d %b %Y %H:%M}"))
        where = entry.location or entry.url or "online"
        item.summary(
            printable(f"{starts:%A %d %B %Y, %H:%M}–{london(entry.ends_at):%H:%M}, {where}")
        )
        if entry.description:
            item.content(printable(entry.description), type="text")
        item.link(href=f"{site}/{event_id}", rel="alternate")
        if entry.url:
            item.link(href=entry.url, rel="related")
        item.updated(changed)
    return feed.atom_str(pretty=True)


def printable(text: str) -> str:
    """``text`` without the control characters XML 1.0 cannot carry (tab and newlines stay)."""
    return "".join(c for c in text if c in "\t\n\r" or not (ord(c) < 32 or 0x7F <= ord(c) < 0xA0))
