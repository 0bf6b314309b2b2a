"""At the door and after: checking people in on a phone (find them by name or reference,
one tap), and the event's attendance with the organisations that came. The events
officer's pages; the events service records each arrival and counts who came."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from contracts.events_v1 import CheckIn, EventReport, ListBookings
from kernel.commands import CommandFailed
from services.web.forms import FormProblems, sentence, text_value
from services.web.office.door import ask, office_render, page, redirect
from services.web.office.events import (
    EVENTS,
    REFERENCE,
    find_event,
    no_event,
    refusal_status,
)
from services.web.office.exports import csv_response
from services.web.security import check_csrf

CHANNELS = {"web": "On the site", "phone": "By phone", "in-person": "In person"}


def matching(bookings: list[dict[str, Any]], search: str) -> list[dict[str, Any]]:
    """The bookings a search finds, by name (any part, any case) or by reference; with no
    search, everyone holding a place. In name order, as a door list is read."""
    wanted = search.casefold()
    found = [
        b
        for b in bookings
        if (wanted and (wanted in b["name"].casefold() or wanted == b["reference"].casefold()))
        or (not wanted and b["status"] == "confirmed")
    ]
    return sorted(found, key=lambda b: (b["name"].casefold(), b["reference"]))


async def check_in_page(
    request: Request,
    event: dict[str, Any],
    search: str,
    problems: FormProblems | None = None,
    *,
    status: int = 200,
) -> Response:
    bookings = (await ask(request, ListBookings(event_id=event["event_id"])))["bookings"]
    confirmed = [b for b in bookings if b["status"] == "confirmed"]
    checked = request.query_params.get("checked", "")
    return office_render(
        request,
        "office/events/check_in.html",
        {
            "event": event,
            "search": search,
            "found": matching(bookings, search),
            "arrived": sum(b["attendance"] == "attended" for b in confirmed),
            "expected": len(confirmed),
            "checked": next(
                (b for b in bookings if b["reference"] == checked and status == 200), None
            ),
            "problems": problems or FormProblems(),
        },
        status=status,
    )


async def check_in(request: Request) -> Response:
    found = await find_event(request)
    if found is None:
        return no_event(request)
    if request.method == "GET":
        search = request.query_params.get("q", "").strip()[:200]
        return await check_in_page(request, found, search)
    form = await request.form()
    check_csrf(request, form)
    search = text_value(form, "q", 200)[0]
    reference = text_value(form, "reference", 20)[0]
    bookings = (await ask(request, ListBookings(event_id=found["event_id"])))["bookings"]
    if not REFERENCE.fullmatch(reference) or reference not in {b["reference"] for b in bookings}:
        # Only someone booked on this event is checked in from its page.
        problems = FormProblems(general=["Choose the person to check in from the list"])
        return await check_in_page(request, found, search, problems, status=400)
    try:
        arrived = await ask(request, CheckIn(reference=reference))
    except CommandFailed as refused:
        problems = FormProblems(general=[sentence(refused.error.message)])
        status = refusal_status(refused.error.code)
        return await check_in_page(request, found, search, problems, status=status)
    query = {"checked": arrived["reference"], **({"q": search} if search else {})}
    return redirect(f"/office/events/{found['event_id']}/check-in?{urlencode(query)}")


async def attendance_report(request: Request, event_id: str) -> dict[str, Any]:
    return await ask(request, EventReport(event_id=event_id))


async def attendance(request: Request) -> Response:
    found = await find_event(request)
    if found is None:
        return no_event(request)
    report = await attendance_report(request, found["event_id"])
    return office_render(
        request,
        "office/events/attendance.html",
        {"event": found, "report": report, "channels": CHANNELS},
    )


async def attendance_csv(request: Request) -> Response:
    found = await find_event(request)
    if found is None:
        return no_event(request)
    report = await attendance_report(request, found["event_id"])
    return csv_response(
        f"organisations-attending-{found['event_id']}.csv",
        ["organisation", "member_id", "people_attended"],
        ([o["name"], o["member_id"], o["attended"]] for o in report["organisations"]),
    )


routes = [
    page(
        "/events/{event_id}/check-in",
        check_in,
        roles=EVENTS,
        methods=("GET", "POST"),
        name="check_in",
    ),
    page("/events/{event_id}/attendance", attendance, roles=EVENTS, name="attendance"),
    page("/events/{event_id}/attendance.csv", attendance_csv, roles=EVENTS, name="attendance_csv"),
]
