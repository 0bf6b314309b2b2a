"""Today: the year's money by tier and aged debt (finance), the coming weeks' events and
their fill (events), deliveries that failed or wait for quiet hours to end (comms), and
the services' consumers, unsent facts and dead letters (operators). Each part comes
from its owner's command; a part the member of staff has no role for is not asked for
at all."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response

from contracts.events_v1 import ListEvents
from contracts.notifications_v1 import ListDeliveries
from contracts.subscriptions_v1 import InvoiceSummary
from contracts.system_v1 import SERVICES, DeadLettersRequest
from services.web.office.accounts import StaffMember
from services.web.office.door import ask, office_render, page
from services.web.office.service_reports import letters_of, service_health

LONDON = ZoneInfo("Europe/London")
COMING_WEEKS = 6
LETTERS_COUNTED = 100  # dead letters counted per service; more shows as "100 or more"
AGES = {
    "not_due": "Not yet due",
    "1-30": "1 to 30 days overdue",
    "31-60": "31 to 60 days overdue",
    "61-90": "61 to 90 days overdue",
    "over_90": "More than 90 days overdue",
}


def financial_year(day: date) -> int:
    """The UK financial year ``day`` falls in: 2026 is 1 April 2026 to 31 March 2027."""
    return day.year if day.month >= 4 else day.year - 1


def london_today() -> date:
    return datetime.now(UTC).astimezone(LONDON).date()


def chosen_year(request: Request) -> int:
    """The year in the address, if it is a sensible one; this financial year otherwise."""
    raw = request.query_params.get("year", "")
    if raw.isdigit() and 1990 <= int(raw) <= 2200:
        return int(raw)
    return financial_year(london_today())


async def coming_events(request: Request) -> list[dict[str, Any]]:
    reply = await ask(request, ListEvents(status="published"))
    now = datetime.now(UTC)
    until = now + timedelta(weeks=COMING_WEEKS)
    return [
        event
        for event in reply["events"]
        if now < datetime.fromisoformat(event["ends_at"])
        and datetime.fromisoformat(event["starts_at"]) < until
    ]


async def today(request: Request) -> Response:
    staff: StaffMember = request.state.staff
    year = chosen_year(request)
    context: dict[str, Any] = {"year": year, "ages": AGES, "weeks": COMING_WEEKS}
    if "finance" in staff.roles:
        context["summary"] = await ask(request, InvoiceSummary(year=year))
    if "events" in staff.roles:
        context["events"] = await coming_events(request)
    if "comms" in staff.roles:
        context["deliveries"] = (await ask(request, ListDeliveries(limit=1)))["counts"]
    if "operator" in staff.roles:
        context["health"], context["letters"] = await asyncio.gather(
            service_health(request), dead_letter_counts(request)
        )
    return office_render(request, "office/today.html", context)


async def dead_letter_counts(request: Request) -> list[dict[str, Any]]:
    """Each service's dead letters: how many (up to ``LETTERS_COUNTED``, and whether
    there are more), or that it did not answer."""
    asked = DeadLettersRequest(limit=LETTERS_COUNTED)
    reports = await asyncio.gather(*(letters_of(request, name, asked) for name in SERVICES))
    return [
        {
            "service": name,
            "up": report is not None,
            "count": len(report.letters) if report else 0,
            "more": bool(report and report.next),
        }
        for name, report in zip(SERVICES, reports, strict=True)
    ]


routes = [page("/", today, roles=None, name="today")]
