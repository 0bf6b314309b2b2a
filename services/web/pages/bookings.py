"""The booker's own page: reached from the signed link in every booking email, or by
giving the reference and the email address together; cancelling behind a confirmation."""

from __future__ import annotations

import contextlib
import hmac
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from contracts.events_v1 import CancelBooking, EventCalendar, ShowBooking
from kernel import links
from services.web.errors import BadLink, NotFound
from services.web.forms import FormProblems, LookupForm, sentence
from services.web.gateway import CommandFailed
from services.web.pages.events import calendar_file, public_event
from services.web.rendering import render
from services.web.security import check_csrf, within_limit

NO_MATCH = "No booking matches that reference and email address. Check both and try again"


def signed_reference(request: Request) -> str:
    """The reference the link names, if the link is genuine; BadLink otherwise."""
    reference = request.path_params["reference"].upper()
    if not links.booking_link_is_genuine(
        request.app.state.link_secret, reference, request.query_params.get("s", "")
    ):
        raise BadLink()
    return reference


async def booking_of(request: Request, reference: str) -> dict[str, Any]:
    try:
        return await request.app.state.gateway.ask(ShowBooking(reference=reference))
    except (CommandFailed, ValidationError):
        raise BadLink() from None


async def booking_and_event(request: Request, reference: str) -> tuple[dict[str, Any], Any]:
    booking = await booking_of(request, reference)
    event = await public_event(request, booking["event_id"])
    return booking, event


async def manage(request: Request) -> Response:
    reference = signed_reference(request)
    booking, event = await booking_and_event(request, reference)
    return render(
        request,
        "pages/bookings/show.html",
        {
            "booking": booking,
            "event": event,
            "signature": request.query_params["s"],
            "cancelled_now": request.query_params.get("done") == "cancelled",
        },
    )


async def calendar(request: Request) -> Response:
    """The booking's own calendar entry, under the UID its invitations carry: added beside
    the emailed one, it replaces it rather than making a second entry; a cancelled
    booking's says so. A waiting-list booking has none until a place is given."""
    reference = signed_reference(request)
    booking = await booking_of(request, reference)
    try:  # the events service refuses a draft event's file itself
        reply = await request.app.state.gateway.ask(
            EventCalendar(event_id=booking["event_id"], reference=reference)
        )
    except CommandFailed:
        raise NotFound("This booking has no calendar entry until it has a place") from None
    return calendar_file(reply["content"], reply["filename"])


async def cancel(request: Request) -> Response:
    """GET asks to confirm; POST cancels, which frees the place for the next in line."""
    reference = signed_reference(request)
    booking, event = await booking_and_event(request, reference)
    signature = request.query_params["s"]
    problems = FormProblems()
    if request.method == "POST":
        check_csrf(request, await request.form())
        try:
            await request.app.state.gateway.ask(CancelBooking(reference=reference))
        except CommandFailed as refused:
            problems.general.append(sentence(refused.error.message))
        else:
            return RedirectResponse(
                request.url_for("booking", reference=reference).include_query_params(
                    s=signature, done="cancelled"
                ),
                status_code=303,
            )
    if booking["status"] == "cancelled":
        problems.general.append("This booking is already cancelled")
    return render(
        request,
        "pages/bookings/cancel.html",
        {"booking": booking, "event": event, "signature": signature, "problems": problems},
        status=409 if problems else 200,
    )


async def find(request: Request) -> Response:
    """Reference and email together open the booking; wrong guesses are limited per client."""
    if request.method == "GET":
        return render(
            request, "pages/bookings/find.html", {"form": LookupForm(), "problems": FormProblems()}
        )
    form_data = await request.form()
    check_csrf(request, form_data)
    limit = request.app.state.lookup_limit
    client = within_limit(request, limit, "tried a booking reference that did not match")
    form, problems = LookupForm.read(form_data)
    if not problems:
        booking = None
        with contextlib.suppress(CommandFailed, ValidationError):
            booking = await request.app.state.gateway.ask(ShowBooking(reference=form.reference))
        if booking is not None and hmac.compare_digest(
            str(booking["email"]).lower().encode(), form.email.lower().encode()
        ):
            return RedirectResponse(
                links.booking_url("", request.app.state.link_secret, booking["reference"]),
                status_code=303,
            )
        limit.record(client)
        problems.general.append(NO_MATCH)
    return render(
        request, "pages/bookings/find.html", {"form": form, "problems": problems}, status=400
    )


routes = [
    Route("/bookings", find, methods=["GET", "POST"], name="find_booking"),
    Route("/bookings/{reference}", manage, name="booking"),
    Route("/bookings/{reference}/calendar.ics", calendar, name="booking_calendar"),
    Route("/bookings/{reference}/cancel", cancel, methods=["GET", "POST"], name="cancel_booking"),
]
