"""Events: the list, creating and editing (London times), publishing, moving and
cancelling, each event's bookings and waiting list, booking a place for someone who
phoned or called in, and cancelling a booking. The events officer's pages; every rule
is the events service's, and its refusal lands on the field it names."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from contracts.events_v1 import (
    CancelBooking,
    CancelEvent,
    ListBookings,
    ListEvents,
    PublishEvent,
    ShowBooking,
    ShowEvent,
)
from kernel.commands import CommandFailed
from services.web.forms import FormProblems, sentence
from services.web.office.door import ask, ask_about, office_render, page, redirect, refusal
from services.web.office.exports import csv_response, decimal_pounds
from services.web.office.forms import LONDON, CancelEventForm, EventForm, StaffBookingForm
from services.web.pages.booking import member_organisations
from services.web.rendering import KINDS, PROGRAMMES
from services.web.security import check_csrf

EVENTS = ("events",)
STATUSES = {
    "": "Any status",
    "draft": "Draft",
    "published": "Published",
    "cancelled": "Cancelled",
    "completed": "Completed",
}
# What the event's page says after each change (the address names which, never the words).
DONE = {
    "created": "The event is saved as a draft. Publish it to open it for booking.",
    "published": "The event is published and open for booking.",
    "updated": "The changes are saved.",
    "moved": "The event has moved. Everyone with a place is told by email, with an "
    "updated calendar entry, and their reminders follow the new time.",
    "cancelled": "The event is cancelled, with every booking on it. Each person booked "
    "is told by email.",
    "booked": "The booking is made.",
    "booking_cancelled": "The booking is cancelled.",
}
REFERENCE = re.compile(r"[A-Z0-9]{4,20}")
REFUSED_AS_CONFLICT = {"closed", "conflict", "full", "duplicate", "over_limit"}


def refusal_status(code: str) -> int:
    return 409 if code in REFUSED_AS_CONFLICT else 400


def no_event(request: Request) -> Response:
    return refusal(request, 404, "Event not found", "There is no event at this address.")


async def find_event(request: Request) -> dict[str, Any] | None:
    """The event the address names, as the events service shows it; None if there is none."""
    return await ask_about(request, lambda: ShowEvent(event_id=request.path_params["event_id"]))


def london_minute(instant: str) -> str:
    """A UTC instant from the events service as a spreadsheet sorts it, in UK time."""
    return f"{datetime.fromisoformat(instant).astimezone(LONDON):%Y-%m-%d %H:%M}"


def event_url(event_id: str, **query: str) -> str:
    return f"/office/events/{event_id}" + (f"?{urlencode(query)}" if query else "")


# The list


def chosen_filters(request: Request) -> tuple[str, str]:
    status = request.query_params.get("status", "")
    programme = request.query_params.get("programme", "")
    return (
        status if status in STATUSES else "",
        programme if programme in PROGRAMMES else "",
    )


async def listed_events(request: Request) -> tuple[list[dict[str, Any]], str, str]:
    status, programme = chosen_filters(request)
    reply = await ask(
        request,
        ListEvents(status=status or None, programme=programme or None),  # type: ignore[arg-type]
    )
    return reply["events"], status, programme


async def events(request: Request) -> Response:
    found, status, programme = await listed_events(request)
    return office_render(
        request,
        "office/events/list.html",
        {
            "events": found,
            "status": status,
            "statuses": STATUSES,
            "programme": programme,
            "query": urlencode({"status": status, "programme": programme}),
        },
    )


async def events_csv(request: Request) -> Response:
    found, _, _ = await listed_events(request)
    return csv_response(
        "events.csv",
        [
            "id",
            "title",
            "kind",
            "programme",
            "status",
            "starts_london",
            "ends_london",
            "venue",
            "online_url",
            "capacity",
            "confirmed",
            "waiting",
            "member_price",
            "non_member_price",
        ],
        (
            [
                e["event_id"],
                e["title"],
                KINDS.get(e["kind"], e["kind"]),
                PROGRAMMES.get(e["programme"], e["programme"]),
                e["status"],
                london_minute(e["starts_at"]),
                london_minute(e["ends_at"]),
                e["venue"],
                e["online_url"],
                e["capacity"],
                e["confirmed"],
                e["waiting"],
                decimal_pounds(e["member_price_minor"]),
                decimal_pounds(e["non_member_price_minor"]),
            ]
            for e in found
        ),
    )


# Creating and editing


def form_page(
    request: Request,
    form: EventForm,
    problems: FormProblems,
    *,
    event: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    return office_render(
        request,
        "office/events/edit.html" if event else "office/events/new.html",
        {"form": form, "problems": problems, "event": event},
        status=status,
    )


def refusal_on_form(refused: CommandFailed) -> FormProblems:
    problems = FormProblems()
    field = EventForm.form_field(refused.error.field)
    if field:
        problems.by_field[field] = sentence(refused.error.message)
    else:
        problems.general.append(sentence(refused.error.message))
    return problems


async def new_event(request: Request) -> Response:
    if request.method == "GET":
        return form_page(request, EventForm(), FormProblems())
    form_data = await request.form()
    check_csrf(request, form_data)
    form, problems = EventForm.read(form_data, kinds=KINDS, programmes=PROGRAMMES)
    command = None
    if not problems:
        command, problems = form.create_command()
    if command is None:
        return form_page(request, form, problems, status=400)
    try:
        created = await ask(request, command)
    except CommandFailed as refused:
        return form_page(
            request, form, refusal_on_form(refused), status=refusal_status(refused.error.code)
        )
    return redirect(event_url(created["event_id"], done="created"))


async def edit_event(request: Request) -> Response:
    event = await find_event(request)
    if event is None:
        return no_event(request)
    if request.method == "GET":
        return form_page(request, EventForm.of(event), FormProblems(), event=event)
    form_data = await request.form()
    check_csrf(request, form_data)
    form, problems = EventForm.read(form_data, kinds=(), programmes=())
    command = None
    if not problems:
        command, problems = form.update_command(event["event_id"])
    if command is None:
        return form_page(request, form, problems, event=event, status=400)
    try:
        changed = await ask(request, command)
    except CommandFailed as refused:
        return form_page(
            request,
            form,
            refusal_on_form(refused),
            event=event,
            status=refusal_status(refused.error.code),
        )
    done = "moved" if changed.get("moved") and event["status"] == "published" else "updated"
    return redirect(event_url(event["event_id"], done=done))


# One event: its bookings and waiting list, and publishing it


async def event_page(
    request: Request,
    event: dict[str, Any],
    problems: FormProblems | None = None,
    *,
    status: int = 200,
) -> Response:
    bookings = (await ask(request, ListBookings(event_id=event["event_id"])))["bookings"]
    done = request.query_params.get("done", "")
    reference = request.query_params.get("ref", "")
    return office_render(
        request,
        "office/events/show.html",
        {
            "event": event,
            "places": [b for b in bookings if b["status"] != "waitlisted"],
            "waiting": sorted(
                (b for b in bookings if b["status"] == "waitlisted"), key=lambda b: b["position"]
            ),
            "done": DONE.get(done) if status == 200 else None,
            "done_reference": reference if REFERENCE.fullmatch(reference) else None,
            "problems": problems or FormProblems(),
        },
        status=status,
    )


async def event(request: Request) -> Response:
    found = await find_event(request)
    if found is None:
        return no_event(request)
    return await event_page(request, found)


async def publish(request: Request) -> Response:
    found = await find_event(request)
    if found is None:
        return no_event(request)
    check_csrf(request, await request.form())
    try:
        await ask(request, PublishEvent(event_id=found["event_id"]))
    except CommandFailed as refused:
        problems = FormProblems(general=[sentence(refused.error.message)])
        return await event_page(request, found, problems, status=refusal_status(refused.error.code))
    return redirect(event_url(found["event_id"], done="published"))


async def cancel_event(request: Request) -> Response:
    found = await find_event(request)
    if found is None:
        return no_event(request)
    form, problems, status = CancelEventForm(), FormProblems(), 200
    if request.method == "POST":
        form_data = await request.form()
        check_csrf(request, form_data)
        form, problems = CancelEventForm.read(form_data)
        status = 400
        if not problems:
            try:
                await ask(request, CancelEvent(event_id=found["event_id"], reason=form.reason))
            except CommandFailed as refused:
                problems.general.append(sentence(refused.error.message))
                status = refusal_status(refused.error.code)
            else:
                return redirect(event_url(found["event_id"], done="cancelled"))
    return office_render(
        request,
        "office/events/cancel.html",
        {"event": found, "form": form, "problems": problems},
        status=status,
    )


async def bookings_csv(request: Request) -> Response:
    found = await find_event(request)
    if found is None:
        return no_event(request)
    bookings = (await ask(request, ListBookings(event_id=found["event_id"])))["bookings"]
    return csv_response(
        f"bookings-{found['event_id']}.csv",
        [
            "reference",
            "status",
            "waiting_position",
            "name",
            "email",
            "phone",
            "organisation",
            "member_id",
            "channel",
            "price",
            "member_price",
            "attendance",
        ],
        (
            [
                b["reference"],
                b["status"],
                b["position"],
                b["name"],
                b["email"],
                b["phone"],
                b["organisation_name"],
                b["member_id"],
                b["channel"],
                decimal_pounds(b["price_minor"]),
                b["member_price"],
                b["attendance"],
            ]
            for b in bookings
        ),
    )


# Booking for someone, and cancelling a booking


async def book(request: Request) -> Response:
    found = await find_event(request)
    if found is None:
        return no_event(request)
    form, problems, status = StaffBookingForm(), FormProblems(), 200
    if request.method == "POST":
        form_data = await request.form()
        check_csrf(request, form_data)
        form, problems = StaffBookingForm.read(form_data)
        status = 400
        command = None
        if not problems:
            command, problems = form.command(found["event_id"], channel=form.channel)  # type: ignore[arg-type]
        if command is not None:
            try:
                booked = await ask(request, command)
            except CommandFailed as refused:
                where = form.form_field(refused.error.field)
                if where:
                    problems.by_field[where] = sentence(refused.error.message)
                else:
                    problems.general.append(sentence(refused.error.message))
                status = refusal_status(refused.error.code)
            else:
                return redirect(
                    event_url(found["event_id"], done="booked", ref=booked["reference"])
                )
    return office_render(
        request,
        "office/events/book.html",
        {
            "event": found,
            "form": form,
            "problems": problems,
            "members": await member_organisations(request),
            "channels": StaffBookingForm.CHANNELS,
        },
        status=status,
    )


async def cancel_booking(request: Request) -> Response:
    found = await find_event(request)
    if found is None:
        return no_event(request)
    try:
        booking = await ask(request, ShowBooking(reference=request.path_params["reference"]))
    except (CommandFailed, ValidationError):
        booking = None
    if booking is None or booking["event_id"] != found["event_id"]:
        return refusal(request, 404, "Booking not found", "There is no booking at this address.")
    problems, status = FormProblems(), 200
    if request.method == "POST":
        check_csrf(request, await request.form())
        try:
            await ask(request, CancelBooking(reference=booking["reference"]))
        except CommandFailed as refused:
            problems.general.append(sentence(refused.error.message))
            status = refusal_status(refused.error.code)
        else:
            return redirect(
                event_url(found["event_id"], done="booking_cancelled", ref=booking["reference"])
            )
    return office_render(
        request,
        "office/events/cancel_booking.html",
        {"event": found, "booking": booking, "problems": problems},
        status=status,
    )


routes = [
    page("/events", events, roles=EVENTS, name="office_events"),
    page("/events.csv", events_csv, roles=EVENTS, name="office_events_csv"),
    page("/events/new", new_event, roles=EVENTS, methods=("GET", "POST"), name="new_event"),
    page("/events/{event_id}", event, roles=EVENTS, name="office_event"),
    page(
        "/events/{event_id}/edit",
        edit_event,
        roles=EVENTS,
        methods=("GET", "POST"),
        name="edit_event",
    ),
    page(
        "/events/{event_id}/publish", publish, roles=EVENTS, methods=("POST",), name="publish_event"
    ),
    page(
        "/events/{event_id}/cancel",
        cancel_event,
        roles=EVENTS,
        methods=("GET", "POST"),
        name="cancel_event",
    ),
    page("/events/{event_id}/bookings.csv", bookings_csv, roles=EVENTS, name="bookings_csv"),
    page("/events/{event_id}/book", book, roles=EVENTS, methods=("GET", "POST"), name="book_for"),
    page(
        "/events/{event_id}/bookings/{reference}/cancel",
        cancel_booking,
        roles=EVENTS,
        methods=("GET", "POST"),
        name="cancel_booking",
    ),
]
