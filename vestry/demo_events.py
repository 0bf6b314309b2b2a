"""The events job of `vestry demo`: the reference partnership's programme of events,
a booking rush that fills one and waitlists the rest, and a cancellation that
promotes the first on the waiting list — all through the running events service."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from nats.aio.client import Client
from rich.progress import Progress

from contracts.events_v1 import (
    BookPlace,
    CancelBooking,
    CreateEvent,
    EventFeed,
    ListBookings,
    ListEvents,
    PublishEvent,
    ShowEvent,
)
from contracts.money import Money
from kernel.commands import CommandFailed, request
from vestry.demo import DISTRICT, UPPER_TIER

LONDON = ZoneInfo("Europe/London")


@dataclass(frozen=True)
class Planned:
    programme: str
    kind: str
    title: str
    venue: str
    week: int  # weeks after the programme starts
    capacity: int
    member_pence: int = 0
    non_member_pence: int = 7500
    hours: int = 3


# About five knowledge-sharing events and forums a year per programme, as the
# reference partnership runs; training courses are sold to members at a discount.
PROGRAMME: tuple[Planned, ...] = (
    Planned("business_process_improvement", "workshop", "Lean systems thinking workshop", "Manchester Town Hall", 0, 40),
    Planned("business_process_improvement", "forum", "Business Process Improvement forum", "Bolton Town Hall", 9, 60),
    Planned("business_process_improvement", "seminar", "Benefits realisation seminar", "Salford Civic Centre", 19, 50),
    Planned("business_process_improvement", "training_course", "Process mapping masterclass", "Stockport Town Hall", 29, 20, 25000, 39500, 6),
    Planned("business_process_improvement", "conference", "Service redesign conference", "Manchester Central", 41, 200, 0, 15000, 7),
    Planned("project_and_programme_management", "training_course", "PRINCE2 Foundation course", "Warrington Town Hall", 2, 16, 45000, 69500, 7),
    Planned("project_and_programme_management", "forum", "Right Track project managers' forum", "Preston Guild Hall", 11, 60),
    Planned("project_and_programme_management", "seminar", "Managing Successful Programmes seminar", "Lancaster Town Hall", 21, 50),
    Planned("project_and_programme_management", "workshop", "Project risk management workshop", "Chorley Town Hall", 31, 30),
    Planned("project_and_programme_management", "conference", "Right Track North West annual conference", "Blackpool Winter Gardens", 43, 250, 0, 15000, 7),
    Planned("customer_service", "forum", "Customer Service Management forum", "Wigan Life Centre", 1, 30),
    Planned("customer_service", "workshop", "Customer Service Excellence workshop", "Bury Town Hall", 13, 30),
    Planned("customer_service", "seminar", "Channel shift seminar", "Oldham Civic Centre", 23, 60),
    Planned("customer_service", "training_course", "Complaints handling course", "Rochdale Number One Riverside", 33, 18, 18000, 29500, 6),
    Planned("customer_service", "workshop", "Customer insight workshop", "Trafford Town Hall", 45, 30),
    Planned("information_sharing_and_security", "forum", "Information governance forum", "Liverpool Cunard Building", 3, 50),
    Planned("information_sharing_and_security", "seminar", "WARP security advisories briefing", "Knowsley Municipal Buildings", 15, 80),
    Planned("information_sharing_and_security", "workshop", "Data sharing agreements workshop", "Sefton Bootle Town Hall", 25, 30),
    Planned("information_sharing_and_security", "training_course", "PSN compliance course", "St Helens Town Hall", 35, 20, 22000, 34500, 6),
    Planned("information_sharing_and_security", "seminar", "Cyber resilience seminar", "Wirral Wallasey Town Hall", 47, 80),
)  # fmt: skip

RUSH_EVENT = "Customer Service Management forum"
RUSH_ORGANISATIONS = UPPER_TIER + DISTRICT  # one officer from each council: 44 for 30 places


def programme_start(today: date) -> date:
    """The first Tuesday at least three weeks away, so every event is open for booking."""
    start = today + timedelta(weeks=3)
    return start + timedelta(days=(1 - start.weekday()) % 7)


def starts_at(planned: Planned, first: date) -> datetime:
    return datetime.combine(first + timedelta(weeks=planned.week), time(10, 0), LONDON)


def create_command(planned: Planned, first: date) -> CreateEvent:
    start = starts_at(planned, first)
    return CreateEvent(
        kind=planned.kind,  # type: ignore[arg-type]
        programme=planned.programme,  # type: ignore[arg-type]
        title=planned.title,
        description=f"{planned.title}, part of the partnership's "
        f"{planned.programme.replace('_', ' ')} programme.",
        venue=planned.venue,
        starts_at=start,
        ends_at=start + timedelta(hours=planned.hours),
        capacity=planned.capacity,
        member_price=Money(amount_minor=planned.member_pence),
        non_member_price=Money(amount_minor=planned.non_member_pence),
    )


async def publish_programme(
    nc: Client, first: date, progress: Progress | None = None
) -> tuple[dict[str, str], int]:
    """Create and publish each planned event, reusing one the demo already published
    (same title and start); returns title → event id and how many were new."""
    existing = {
        (e["title"], e["starts_at"]): e["event_id"]
        for e in (await request(nc, ListEvents(status="published")))["events"]
    }
    task = (
        progress.add_task("Publishing the events programme", total=len(PROGRAMME))
        if progress
        else None
    )
    ids: dict[str, str] = {}
    new = 0
    for planned in PROGRAMME:
        command = create_command(planned, first)
        key = (planned.title, command.starts_at.astimezone(ZoneInfo("UTC")).isoformat())
        if key in existing:
            ids[planned.title] = existing[key]
        else:
            created = await request(nc, command)
            await request(nc, PublishEvent(event_id=created["event_id"]))
            ids[planned.title] = created["event_id"]
            new += 1
        if progress is not None and task is not None:
            progress.advance(task)
    return ids, new


def _officer(event_id: str, organisation: str) -> BookPlace:
    slug = "-".join(organisation.lower().replace(" and ", " ").split()[:3])
    return BookPlace(
        event_id=event_id,
        name=f"Customer services lead, {organisation}",
        email=f"customer.services@{slug}.example.gov.uk",
        organisation_name=organisation,
    )


async def booking_rush(
    nc: Client, event_id: str, progress: Progress | None = None
) -> dict[str, Any]:
    """Every council's customer services lead books the forum at once."""
    task = progress.add_task("Booking rush", total=len(RUSH_ORGANISATIONS)) if progress else None

    async def book(organisation: str) -> dict[str, Any]:
        try:
            reply = await request(nc, _officer(event_id, organisation))
        except CommandFailed as failure:
            reply = {"status": "refused", "code": failure.error.code}
        if progress is not None and task is not None:
            progress.advance(task)
        return reply

    replies = await asyncio.gather(*(book(o) for o in RUSH_ORGANISATIONS))
    return {
        "requests": len(replies),
        "confirmed": sum(r["status"] == "confirmed" for r in replies),
        "waitlisted": sum(r["status"] == "waitlisted" for r in replies),
        "already_booked": sum(r.get("code") == "duplicate" for r in replies),
        "refused": sum(r["status"] == "refused" and r.get("code") != "duplicate" for r in replies),
        "member_price": sum(bool(r.get("member_price")) for r in replies),
    }


async def cancel_one(nc: Client, event_id: str) -> dict[str, Any]:
    """The first confirmed booker cancels; the head of the waiting list gets the place at once."""
    bookings = (await request(nc, ListBookings(event_id=event_id)))["bookings"]
    confirmed = [b for b in bookings if b["status"] == "confirmed"]
    waiting = [b for b in bookings if b["status"] == "waitlisted"]
    if not confirmed or not waiting:
        return {"cancelled": None, "promoted": []}
    cancelled = await request(nc, CancelBooking(reference=confirmed[0]["reference"]))
    return {
        "cancelled": f"{cancelled['reference']} ({cancelled['organisation_name']})",
        "promoted": [f"{ref} ({waiting[0]['organisation_name']})" for ref in cancelled["promoted"]],
    }


async def run_events_demo(nc: Client, progress: Progress | None = None) -> dict[str, Any]:
    """The events job end to end; returns a summary for the demo's report."""
    first = programme_start(date.today())
    ids, new = await publish_programme(nc, first, progress)
    rush_id = ids[RUSH_EVENT]
    rush = await booking_rush(nc, rush_id, progress)
    cancellation = await cancel_one(nc, rush_id)
    shown = await request(nc, ShowEvent(event_id=rush_id))
    feed = await request(nc, EventFeed(format="ics"))
    by_programme: dict[str, int] = {}
    for planned in PROGRAMME:
        by_programme[planned.programme] = by_programme.get(planned.programme, 0) + 1
    return {
        "events_published": len(ids),
        "events_new": new,
        "events_by_programme": by_programme,
        "rush_event": f"{RUSH_EVENT} ({rush_id}), {shown['starts_london']}",
        "rush": rush,
        "cancellation": cancellation,
        "rush_event_now": {
            "capacity": shown["capacity"],
            "confirmed": shown["confirmed"],
            "waiting": shown["waiting"],
        },
        "feed_events": feed["events"],
    }
