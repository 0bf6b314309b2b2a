"""Booking a place: the form, the events service's answer, and the answer page."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from contracts.events_v1 import ShowBooking
from contracts.subscriptions_v1 import ListMembers
from kernel import links
from services.web.errors import BadLink
from services.web.forms import BookingForm, FormProblems, sentence
from services.web.gateway import CommandFailed, ServiceUnavailable
from services.web.pages.events import public_event
from services.web.rendering import render
from services.web.security import check_csrf, within_limit

BOOKABLE = {"open", "waiting_list"}


async def member_organisations(request: Request) -> list[dict[str, str]]:
    """Current members for the organisation list; none if subscriptions is not answering,
    so a person can still book by typing their organisation's name."""
    try:
        reply = await request.app.state.gateway.ask(ListMembers())
    except ServiceUnavailable:
        return []
    return [{"value": m["member_id"], "text": m["name"]} for m in reply["members"] if m["current"]]


async def form_page(
    request: Request,
    event: dict[str, object],
    form: BookingForm,
    problems: FormProblems,
    *,
    status: int = 200,
) -> Response:
    return render(
        request,
        "pages/events/book.html",
        {
            "event": event,
            "form": form,
            "problems": problems,
            "members": await member_organisations(request),
        },
        status=status,
    )


async def book(request: Request) -> Response:
    event = await public_event(request, request.path_params["event_id"])
    if event["booking"] not in BOOKABLE:
        return render(request, "pages/events/show.html", {"event": event}, status=409)
    if request.method == "GET":
        return await form_page(request, event, BookingForm(), FormProblems())

    form_data = await request.form()
    check_csrf(request, form_data)
    limit = request.app.state.booking_limit
    limit.record(within_limit(request, limit, "sent the booking form"))

    form, problems = BookingForm.read(form_data)
    command = None
    if not problems:
        command, problems = form.command(str(event["event_id"]))
    if command is None:
        return await form_page(request, event, form, problems, status=400)
    try:
        booked = await request.app.state.gateway.ask(command)
    except CommandFailed as refused:
        error = refused.error
        problems = FormProblems()
        where = form.form_field(error.field)
        if where:
            problems.by_field[where] = sentence(error.message)
        else:
            problems.general.append(sentence(error.message))
        status = 409 if error.code in {"closed", "full", "duplicate", "over_limit"} else 400
        return await form_page(request, event, form, problems, status=status)
    reference = booked["reference"]
    signature = links.signature(request.app.state.link_secret, "booking", reference)
    return RedirectResponse(
        request.url_for(
            "booked", event_id=event["event_id"], reference=reference
        ).include_query_params(s=signature),
        status_code=303,
    )


async def booked(request: Request) -> Response:
    """The answer page: confirmed, or waitlisted with the position, and what happens next."""
    reference = request.path_params["reference"].upper()
    if not links.booking_link_is_genuine(
        request.app.state.link_secret, reference, request.query_params.get("s", "")
    ):
        raise BadLink()
    booking = await request.app.state.gateway.ask(ShowBooking(reference=reference))
    event = await public_event(request, booking["event_id"])
    manage_url = links.booking_url("", request.app.state.link_secret, reference)
    return render(
        request,
        "pages/events/booked.html",
        {
            "booking": booking,
            "event": event,
            "manage_url": manage_url,
            "signature": request.query_params["s"],
        },
    )


routes = [
    Route("/events/{event_id}/book", book, methods=["GET", "POST"], name="book"),
    Route("/events/{event_id}/booked/{reference}", booked, name="booked"),
]
