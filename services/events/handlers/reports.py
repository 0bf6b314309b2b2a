"""The partnership's reports on its events: channel shift (bookings by how they were
made, at what each way costs) and reach (how many different organisations attended).

The handlers read the store; the counting below them is pure, so a unit test can
give it rows of its own.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from typing import Any, Protocol

from contracts.events_v1 import ChannelCosts, ChannelShiftReport, OrganisationsReport
from kernel.commands import CommandContext
from services.events import domain, store
from services.events.handlers.places import Places

CHANNELS = ("web", "phone", "in-person")
HELD = ("published", "completed")  # the events people could come to


class ReportCommands(Places):
    """One method per report command."""

    async def channel_shift(
        self, command: ChannelShiftReport, ctx: CommandContext
    ) -> dict[str, Any]:
        """Every booking made in the year, by month, programme and channel, costed."""
        start, end = year_bounds(command.year)
        lines: list[tuple[str, str, str]] = []
        for event in await store.events(ctx.session, programme=command.programme):
            # A booking is made after its event is created and before it ends.
            if event.created_at >= end or event.ends_at < start:
                continue
            for booking in await store.bookings_of(ctx.session, event.id):
                if start <= booking.created_at < end:
                    lines.append((month_of(booking.created_at), event.programme, booking.channel))
        return {
            "year": command.year,
            "programme": command.programme,
            **channel_shift(lines, months=year_months(command.year), costs=command.unit_costs),
        }

    async def organisations(
        self, command: OrganisationsReport, ctx: CommandContext
    ) -> dict[str, Any]:
        """The different organisations attending each event starting in the year, and
        each programme across its events; drafts and cancelled events had nobody to come."""
        start, end = year_bounds(command.year)
        attended: list[tuple[dict[str, Any], list[Any]]] = []
        for event in await store.events(ctx.session, programme=command.programme):
            if start <= event.starts_at < end and event.status in HELD:
                bookings = await store.bookings_of(ctx.session, event.id)
                attended.append(
                    (
                        {
                            "event_id": event.id,
                            "title": event.title,
                            "kind": event.kind,
                            "programme": event.programme,
                            "status": event.status,
                            "starts_at": event.starts_at.isoformat(),
                            "starts_london": domain.london(event.starts_at).strftime(
                                "%a %d %b %Y %H:%M"
                            ),
                        },
                        bookings,
                    )
                )
        return {
            "year": command.year,
            "programme": command.programme,
            **reach(attended),
        }


# Counting, free of the store


class Attended(Protocol):
    status: str
    attendance: str | None
    organisation_key: str | None
    organisation_name: str | None
    member_id: str | None


def year_bounds(year: int) -> tuple[datetime, datetime]:
    """The financial year as UTC instants: 1 April 00:00 London to the next 1 April."""
    return (
        datetime.combine(date(year, 4, 1), time(0), domain.LONDON).astimezone(UTC),
        datetime.combine(date(year + 1, 4, 1), time(0), domain.LONDON).astimezone(UTC),
    )


def year_months(year: int) -> list[str]:
    """The year's twelve months, April first, as ``YYYY-MM``."""
    return [f"{year + (month < 4)}-{month:02d}" for month in (*range(4, 13), *range(1, 4))]


def month_of(moment: datetime) -> str:
    """The London month an instant falls in, as ``YYYY-MM``."""
    return domain.london(moment).strftime("%Y-%m")


def costed(counts: Counter[str], costs: ChannelCosts) -> dict[str, Any]:
    """Bookings by channel, each at its unit cost, and what the web ones saved against
    taking each of them by phone (pence throughout)."""
    unit = unit_costs(costs)
    bookings = {channel: counts.get(channel, 0) for channel in CHANNELS}
    total = sum(bookings.values())
    cost_by_channel = {channel: bookings[channel] * unit[channel] for channel in CHANNELS}
    return {
        "bookings": bookings,
        "total": total,
        "cost_by_channel": cost_by_channel,
        "cost": sum(cost_by_channel.values()),
        "saved": bookings["web"] * (unit["phone"] - unit["web"]),
        "web_share_percent": round(100 * bookings["web"] / total, 1) if total else None,
    }


def unit_costs(costs: ChannelCosts) -> dict[str, int]:
    return {
        "web": costs.web.amount_minor,
        "phone": costs.phone.amount_minor,
        "in-person": costs.in_person.amount_minor,
    }


def channel_shift(
    lines: Iterable[tuple[str, str, str]], *, months: list[str], costs: ChannelCosts
) -> dict[str, Any]:
    """The report from (month, programme, channel) of each booking: a row per month and
    programme that had bookings, every month of the year (for the chart), each programme,
    and the year."""
    by_row: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    by_month: dict[str, Counter[str]] = {month: Counter() for month in months}
    by_programme: dict[str, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    for month, programme, channel in lines:
        by_row[(month, programme)][channel] += 1
        by_month.setdefault(month, Counter())[channel] += 1
        by_programme[programme][channel] += 1
        totals[channel] += 1
    return {
        "unit_costs": unit_costs(costs),
        "rows": [
            {"month": month, "programme": programme, **costed(counts, costs)}
            for (month, programme), counts in sorted(by_row.items())
        ],
        "by_month": [
            {"month": month, **costed(counts, costs)} for month, counts in by_month.items()
        ],
        "by_programme": [
            {"programme": programme, **costed(counts, costs)}
            for programme, counts in sorted(by_programme.items())
        ],
        "totals": costed(totals, costs),
    }


def organisations_attending(bookings: Iterable[Attended]) -> list[dict[str, Any]]:
    """Each organisation with a checked-in booking: its name (as its first booking gave
    it), member id and how many of its people attended, most first."""
    found: dict[str, dict[str, Any]] = {}
    for booking in bookings:
        key = booking.organisation_key
        if booking.status != "confirmed" or booking.attendance != "attended" or not key:
            continue
        entry = found.setdefault(
            key,
            {
                "name": booking.organisation_name or key,
                "member_id": booking.member_id,
                "attended": 0,
            },
        )
        entry["attended"] += 1
    return sorted(found.values(), key=lambda o: (-o["attended"], o["name"].casefold()))


def reach(events: Iterable[tuple[dict[str, Any], list[Any]]]) -> dict[str, Any]:
    """Different organisations attending each event, and each programme: an organisation
    at three of a programme's events counts once for it."""
    rows = []
    keys_by_programme: dict[str, set[str]] = defaultdict(set)
    events_by_programme: Counter[str] = Counter()
    for event, bookings in events:
        attending = {
            b.organisation_key
            for b in bookings
            if b.status == "confirmed" and b.attendance == "attended" and b.organisation_key
        }
        rows.append(
            {
                **event,
                "attended": sum(
                    b.status == "confirmed" and b.attendance == "attended" for b in bookings
                ),
                "organisations_attending": len(attending),
            }
        )
        keys_by_programme[event["programme"]] |= attending
        events_by_programme[event["programme"]] += 1
    return {
        "events": rows,
        "programmes": [
            {
                "programme": programme,
                "events": count,
                "organisations_attending": len(keys_by_programme[programme]),
            }
            for programme, count in sorted(events_by_programme.items())
        ],
        "organisations_attending": len(set().union(*keys_by_programme.values())),
    }
