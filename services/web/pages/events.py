"""The programme (``/events``), one event, and the calendars and feeds people subscribe to."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contracts.events_v1 import EventCalendar, EventFeed, ListEvents, ShowEvent
from services.web.errors import NotFound
from services.web.gateway import CommandFailed
from services.web.rendering import KINDS, PROGRAMMES, render

# What the public may see: a draft is the events officer's until published.
PUBLIC_STATUSES = {"published", "cancelled", "completed"}


async def programme(request: Request) -> Response:
    chosen_programme = request.query_params.get("programme") or None
    chosen_kind = request.query_params.get("kind") or None
    if chosen_programme not in (None, *PROGRAMMES) or chosen_kind not in (None, *KINDS):
        chosen_programme = chosen_kind = None  # an edited address shows everything
    return await shared_page(
        request,
        ("programme", chosen_programme, chosen_kind),
        lambda: programme_page(request, chosen_programme, chosen_kind),
    )


async def shared_page(
    request: Request, key: tuple[str | None, ...], make: Callable[[], Awaitable[Response]]
) -> Response:
    """A page the same for every visitor, made once for all who ask for it at the same time."""
    made = await request.app.state.flights.share(key, make)
    return Response(made.body, status_code=made.status_code, media_type="text/html")


async def programme_page(
    request: Request, chosen_programme: str | None, chosen_kind: str | None
) -> Response:
    reply = await request.app.state.gateway.ask(
        ListEvents(status="published", programme=chosen_programme)  # type: ignore[arg-type]
    )
    now = datetime.now(UTC)
    events = [
        e
        for e in reply["events"]
        if (chosen_kind is None or e["kind"] == chosen_kind)
        and datetime.fromisoformat(e["ends_at"]) > now
    ]
    return render(
        request,
        "pages/events/list.html",
        {"events": events, "programme": chosen_programme, "kind": chosen_kind},
    )


async def public_event(request: Request, event_id: str) -> dict[str, Any]:
    """The event as the public sees it; NotFound for an unknown id or a draft."""
    try:
        event = await request.app.state.gateway.ask(ShowEvent(event_id=event_id))
    except (CommandFailed, ValidationError):
        raise NotFound("There is no event at this address") from None
    if event["status"] not in PUBLIC_STATUSES:
        raise NotFound("There is no event at this address")
    return event


async def show(request: Request) -> Response:
    event_id = request.path_params["event_id"]

    async def page() -> Response:
        event = await public_event(request, event_id)
        return render(request, "pages/events/show.html", {"event": event})

    return await shared_page(request, ("event", event_id), page)


async def event_calendar(request: Request) -> Response:
    event_id = request.path_params["event_id"]
    await public_event(request, event_id)
    reply = await request.app.state.gateway.ask(EventCalendar(event_id=event_id))
    return calendar_file(reply["content"], reply["filename"])


async def calendar_feed(request: Request) -> Response:
    reply = await request.app.state.gateway.ask(EventFeed(format="ics"))
    return Response(reply["content"], media_type="text/calendar; charset=utf-8")


async def atom_feed(request: Request) -> Response:
    reply = await request.app.state.gateway.ask(EventFeed(format="atom"))
    return Response(reply["content"], media_type="application/atom+xml; charset=utf-8")


def calendar_file(content: str, filename: str) -> Response:
    return Response(
        content,
        media_type="text/calendar; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


routes = [
    Route("/events", programme, name="programme"),
    Route("/events.ics", calendar_feed, name="calendar_feed"),
    Route("/events.atom", atom_feed, name="atom_feed"),
    Route("/events/{event_id}.ics", event_calendar, name="event_calendar"),
    Route("/events/{event_id}", show, name="event"),
]
