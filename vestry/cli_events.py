"""`vestry events …`, `vestry book`, `vestry bookings …`, `vestry checkin`: the events
officer's and the bookers' commands. Everything goes to the events service over NATS."""

from __future__ import annotations

import re
import sys
from datetime import datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

import typer

from vestry.terminal import BadInput, build, console, emit, new_table, options_of, refuse, send

if TYPE_CHECKING:
    from rich.table import Table

    from contracts.money import Money

LONDON = ZoneInfo("Europe/London")

events_app = typer.Typer(no_args_is_help=True, help="Workshops, forums, seminars and courses.")
bookings_app = typer.Typer(no_args_is_help=True, help="Bookings: track, cancel, list.")

KINDS = "workshop, seminar, forum, training_course, conference"
PROGRAMMES = (
    "business_process_improvement, project_and_programme_management, customer_service, "
    "information_sharing_and_security"
)


# Input, checked before anything is sent


def london_time(text: str, field: str, *, day_of: datetime | None = None) -> datetime:
    """``YYYY-MM-DD HH:MM`` in London (or ``HH:MM`` on the day of ``day_of``), as an aware instant."""
    text = text.strip()
    try:
        if day_of is not None and re.fullmatch(r"\d{1,2}:\d{2}", text):
            local = datetime.combine(
                day_of.astimezone(LONDON).date(), time.fromisoformat(text.zfill(5))
            )
        else:
            local = datetime.fromisoformat(text.replace("T", " "))
    except ValueError:
        raise BadInput(
            f"{text!r} is not a time; write it as YYYY-MM-DD HH:MM (London)", field
        ) from None
    if local.tzinfo is None:
        local = local.replace(tzinfo=LONDON)
    return local


def pence(text: str, field: str) -> Money:
    """``95``, ``95.50``, ``£95.50`` or ``free`` as Money in pence."""
    from contracts.money import Money

    cleaned = text.strip().lower().replace("£", "").replace(",", "")
    if cleaned in ("free", "0", ""):
        return Money(amount_minor=0)
    match = re.fullmatch(r"(\d+)(?:\.(\d{1,2}))?", cleaned)
    if not match:
        raise BadInput(f"{text!r} is not an amount in pounds, e.g. 95 or 95.50 or free", field)
    pounds, fraction = match.groups()
    return Money(amount_minor=int(pounds) * 100 + int((fraction or "0").ljust(2, "0")))


# Rendering


def _event_table(event: dict[str, Any]) -> Table:
    table = new_table(title=f"{event['title']} ({event['event_id']})", show_header=False)
    rows = [
        ("status", event["status"]),
        ("kind", event["kind"].replace("_", " ")),
        ("programme", event["programme"].replace("_", " ")),
        ("when", f"{event['starts_london']}–{event['ends_london']} (London)"),
        ("where", event["venue"] or event["online_url"] or "-"),
        (
            "places",
            f"{event['confirmed']} of {event['capacity']} taken, {event['places_left']} left",
        ),
        ("waiting list", str(event["waiting"]) if event["waiting_list"] else "none"),
        ("member price", event["member_price"]),
        ("non-member price", event["non_member_price"]),
    ]
    if event.get("places_per_organisation"):
        rows.append(("places per organisation", str(event["places_per_organisation"])))
    for name, value in rows:
        table.add_row(name, value)
    return table


def _booking_line(booking: dict[str, Any]) -> str:
    status = booking["status"]
    if status == "waitlisted":
        status = f"waitlisted, position {booking['position']}"
    return (
        f"[bold]{booking['reference']}[/] {booking['name']} — {status} for "
        f"{booking['event_title']} on {booking['starts_london']} ({booking['price']})"
    )


# events …


@events_app.command("create")
def events_create(
    ctx: typer.Context,
    title: Annotated[str, typer.Option(help="The event's title.")],
    starts: Annotated[str, typer.Option(help="Start, YYYY-MM-DD HH:MM in London.")],
    ends: Annotated[str, typer.Option(help="End: HH:MM the same day, or YYYY-MM-DD HH:MM.")],
    capacity: Annotated[int, typer.Option(help="Places.")],
    kind: Annotated[str, typer.Option(help=KINDS)] = "workshop",
    programme: Annotated[str, typer.Option(help=PROGRAMMES)] = "business_process_improvement",
    venue: Annotated[str | None, typer.Option(help="Where it meets.")] = None,
    online_url: Annotated[str | None, typer.Option(help="Online link.")] = None,
    description: Annotated[str, typer.Option(help="What it is about.")] = "",
    member_price: Annotated[str, typer.Option(help="Member price in pounds, or free.")] = "free",
    non_member_price: Annotated[str, typer.Option(help="Non-member price in pounds.")] = "free",
    opens: Annotated[str | None, typer.Option(help="Bookings open, YYYY-MM-DD HH:MM.")] = None,
    closes: Annotated[str | None, typer.Option(help="Bookings close (default: the start).")] = None,
    per_organisation: Annotated[
        int | None, typer.Option(help="Most places per organisation.")
    ] = None,
    waiting_list: Annotated[bool, typer.Option(help="Take a waiting list when full.")] = True,
) -> None:
    """Add an event as a draft; `vestry events publish` opens it for booking."""
    from contracts.events_v1 import CreateEvent

    options = options_of(ctx)

    def make() -> CreateEvent:
        start = london_time(starts, "starts_at")
        return CreateEvent(
            kind=kind,  # type: ignore[arg-type]
            programme=programme,  # type: ignore[arg-type]
            title=title,
            description=description,
            venue=venue,
            online_url=online_url,
            starts_at=start,
            ends_at=london_time(ends, "ends_at", day_of=start),
            capacity=capacity,
            member_price=pence(member_price, "member_price"),
            non_member_price=pence(non_member_price, "non_member_price"),
            booking_opens_at=london_time(opens, "booking_opens_at") if opens else None,
            booking_closes_at=london_time(closes, "booking_closes_at") if closes else None,
            places_per_organisation=per_organisation,
            waiting_list=waiting_list,
        )

    event = send(options, build(options, make))
    emit(
        options,
        event,
        lambda: (
            console.print(_event_table(event)),
            console.print(
                f"Draft saved. Publish it with `vestry events publish {event['event_id']}`."
            ),
        ),
    )


@events_app.command("update")
def events_update(
    ctx: typer.Context,
    event_id: Annotated[str, typer.Argument(help="The event's id.")],
    title: Annotated[str | None, typer.Option(help="New title.")] = None,
    starts: Annotated[
        str | None, typer.Option(help="New start, YYYY-MM-DD HH:MM (London).")
    ] = None,
    ends: Annotated[
        str | None, typer.Option(help="New end: HH:MM on the start's day, or full.")
    ] = None,
    venue: Annotated[str | None, typer.Option(help="New venue.")] = None,
    online_url: Annotated[str | None, typer.Option(help="New online link.")] = None,
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
    capacity: Annotated[
        int | None, typer.Option(help="New capacity (not below confirmed places).")
    ] = None,
    member_price: Annotated[str | None, typer.Option(help="New member price.")] = None,
    non_member_price: Annotated[str | None, typer.Option(help="New non-member price.")] = None,
    closes: Annotated[str | None, typer.Option(help="New closing time for bookings.")] = None,
    per_organisation: Annotated[
        int | None, typer.Option(help="New limit per organisation.")
    ] = None,
    clear: Annotated[
        list[str] | None, typer.Option(help="Remove: venue, online_url or places_per_organisation.")
    ] = None,
) -> None:
    """Change an event; moving it tells every confirmed attendee and reschedules reminders."""
    from contracts.events_v1 import UpdateEvent

    options = options_of(ctx)

    def make() -> UpdateEvent:
        start = london_time(starts, "starts_at") if starts else None
        end = None
        if ends:
            if start is None and re.fullmatch(r"\d{1,2}:\d{2}", ends.strip()):
                raise BadInput(
                    "give --ends as YYYY-MM-DD HH:MM when the start does not change", "ends_at"
                )
            end = london_time(ends, "ends_at", day_of=start)
        return UpdateEvent(
            event_id=event_id,
            title=title,
            description=description,
            venue=venue,
            online_url=online_url,
            starts_at=start,
            ends_at=end,
            capacity=capacity,
            member_price=pence(member_price, "member_price") if member_price else None,
            non_member_price=pence(non_member_price, "non_member_price")
            if non_member_price
            else None,
            booking_closes_at=london_time(closes, "booking_closes_at") if closes else None,
            places_per_organisation=per_organisation,
            clear=clear or [],  # type: ignore[arg-type]
        )

    event = send(options, build(options, make))

    def render() -> None:
        console.print(_event_table(event))
        changed = ", ".join(event["changed"]) or "nothing"
        console.print(f"Changed: {changed}.")
        if event.get("moved"):
            console.print(
                "Every confirmed attendee will hear of the move; reminders were rescheduled."
            )
        if event["promoted"]:
            console.print(f"Promoted from the waiting list: {', '.join(event['promoted'])}")

    emit(options, event, render)


@events_app.command("publish")
def events_publish(
    ctx: typer.Context, event_id: Annotated[str, typer.Argument(help="The event's id.")]
) -> None:
    """Open a draft event for booking."""
    from contracts.events_v1 import PublishEvent

    options = options_of(ctx)
    event = send(options, build(options, lambda: PublishEvent(event_id=event_id)))
    emit(
        options,
        event,
        lambda: console.print(f"[green]{event['title']}[/] is published and open for booking."),
    )


@events_app.command("cancel")
def events_cancel(
    ctx: typer.Context,
    event_id: Annotated[str, typer.Argument(help="The event's id.")],
    reason: Annotated[str | None, typer.Option(help="Why, for the attendees.")] = None,
) -> None:
    """Cancel an event and every booking on it; each booker is told once."""
    from contracts.events_v1 import CancelEvent

    options = options_of(ctx)
    event = send(options, build(options, lambda: CancelEvent(event_id=event_id, reason=reason)))
    emit(
        options,
        event,
        lambda: console.print(
            f"{event['title']} is cancelled; {event['bookings_cancelled']} bookings cancelled with it."
        ),
    )


@events_app.command("ls")
def events_ls(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help="draft, published, cancelled or completed.")
    ] = None,
    programme: Annotated[str | None, typer.Option(help=PROGRAMMES)] = None,
) -> None:
    """List events, soonest first."""
    from contracts.events_v1 import ListEvents

    options = options_of(ctx)
    reply = send(options, build(options, lambda: ListEvents(status=status, programme=programme)))  # type: ignore[arg-type]

    def render() -> None:
        table = new_table(title=f"Events ({len(reply['events'])})")
        for column in (
            "id",
            "when (London)",
            "title",
            "programme",
            "status",
            "places left",
            "waiting",
        ):
            table.add_column(column)
        for e in reply["events"]:
            table.add_row(
                e["event_id"],
                e["starts_london"],
                e["title"],
                e["programme"].replace("_", " "),
                e["status"],
                f"{e['places_left']}/{e['capacity']}",
                str(e["waiting"]),
            )
        console.print(table)

    emit(options, reply["events"], render)


@events_app.command("show")
def events_show(
    ctx: typer.Context, event_id: Annotated[str, typer.Argument(help="The event's id.")]
) -> None:
    """One event: when, where, prices, places left and the waiting list's length."""
    from contracts.events_v1 import ShowEvent

    options = options_of(ctx)
    event = send(options, build(options, lambda: ShowEvent(event_id=event_id)))
    emit(options, event, lambda: console.print(_event_table(event)))


@events_app.command("feed")
def events_feed(
    ctx: typer.Context,
    format: Annotated[str, typer.Option("--format", help="ics (iCalendar) or atom.")] = "ics",
    output: Annotated[
        Path | None, typer.Option(help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """The upcoming published events as an iCalendar (RFC 5545) or Atom (RFC 4287) feed."""
    from contracts.events_v1 import EventFeed

    options = options_of(ctx)
    reply = send(options, build(options, lambda: EventFeed(format=format)))  # type: ignore[arg-type]
    if output is not None:
        output.write_text(reply["content"])
        emit(
            options,
            {k: v for k, v in reply.items() if k != "content"} | {"file": str(output)},
            lambda: console.print(f"{reply['events']} events written to {output}"),
        )
    elif options.json:
        emit(options, reply, lambda: None)
    else:
        sys.stdout.write(reply["content"])


@events_app.command("report")
def events_report(
    ctx: typer.Context, event_id: Annotated[str, typer.Argument(help="The event's id.")]
) -> None:
    """Booked, attended, no-shows, organisations attending and bookings by channel."""
    from contracts.events_v1 import EventReport

    options = options_of(ctx)
    report = send(options, build(options, lambda: EventReport(event_id=event_id)))

    def render() -> None:
        table = new_table(
            title=f"Report: {report['event']['title']} ({report['event']['status']})",
            show_header=False,
        )
        for label, key in (
            ("booked", "booked"),
            ("attended", "attended"),
            ("no-shows", "no_shows"),
            ("not yet recorded", "not_yet_recorded"),
            ("waiting", "waiting"),
            ("cancelled", "cancelled"),
            ("organisations attending", "organisations_attending"),
        ):
            table.add_row(label, str(report[key]))
        for channel, count in report["by_channel"].items():
            table.add_row(f"booked by {channel}", str(count))
        console.print(table)

    emit(options, report, render)


# book, bookings …, checkin


def book(
    ctx: typer.Context,
    event_id: Annotated[str, typer.Argument(help="The event's id.", metavar="EVENT")],
    name: Annotated[str, typer.Option(help="The person's name.")],
    email: Annotated[str, typer.Option(help="The person's email.")],
    phone: Annotated[
        str | None, typer.Option(help="Mobile number (UK numbers may omit +44).")
    ] = None,
    org: Annotated[str | None, typer.Option("--org", help="Member organisation id.")] = None,
    org_name: Annotated[str | None, typer.Option("--org-name", help="Organisation's name.")] = None,
    sms: Annotated[bool, typer.Option("--sms", help="Opt in to SMS (needs --phone).")] = False,
    channel: Annotated[str, typer.Option(help="web, phone or in-person.")] = "web",
) -> None:
    """Book a place: confirmed, waitlisted with a position, or refused with the reason."""
    from contracts.events_v1 import BookPlace
    from contracts.system_v1 import CommandError

    options = options_of(ctx)
    if org and org_name:
        refuse(
            CommandError(code="invalid", message="give --org or --org-name, not both", field="org"),
            options,
        )
    command = build(
        options,
        lambda: BookPlace(
            event_id=event_id,
            name=name,
            email=email,
            phone=phone,
            sms=sms,
            member_id=org,
            organisation_name=org_name,
            channel=channel,  # type: ignore[arg-type]
        ),
    )
    booking = send(options, command)
    emit(
        options,
        booking,
        lambda: (
            console.print(_booking_line(booking)),
            console.print(f"Track it with `vestry bookings show {booking['reference']}`."),
        ),
    )


def checkin(
    ctx: typer.Context, reference: Annotated[str, typer.Argument(help="Booking reference.")]
) -> None:
    """Record that a confirmed booker arrived."""
    from contracts.events_v1 import CheckIn

    options = options_of(ctx)
    booking = send(options, build(options, lambda: CheckIn(reference=reference)))
    emit(
        options,
        booking,
        lambda: console.print(f"[green]{booking['name']}[/] checked in ({booking['reference']})."),
    )


@bookings_app.command("show")
def bookings_show(
    ctx: typer.Context, reference: Annotated[str, typer.Argument(help="Booking reference.")]
) -> None:
    """A booking's status and, if waiting, its place in the queue."""
    from contracts.events_v1 import ShowBooking

    options = options_of(ctx)
    booking = send(options, build(options, lambda: ShowBooking(reference=reference)))
    emit(options, booking, lambda: console.print(_booking_line(booking)))


@bookings_app.command("cancel")
def bookings_cancel(
    ctx: typer.Context, reference: Annotated[str, typer.Argument(help="Booking reference.")]
) -> None:
    """Cancel a booking (until the event starts); the next on the waiting list gets the place."""
    from contracts.events_v1 import CancelBooking

    options = options_of(ctx)
    booking = send(options, build(options, lambda: CancelBooking(reference=reference)))

    def render() -> None:
        console.print(f"{booking['reference']} is cancelled.")
        if booking["promoted"]:
            console.print(f"Promoted from the waiting list: {', '.join(booking['promoted'])}")

    emit(options, booking, render)


@bookings_app.command("ls")
def bookings_ls(
    ctx: typer.Context,
    event_id: Annotated[str, typer.Argument(help="The event's id.", metavar="EVENT")],
) -> None:
    """An event's bookings in order of arrival."""
    from contracts.events_v1 import ListBookings

    options = options_of(ctx)
    reply = send(options, build(options, lambda: ListBookings(event_id=event_id)))

    def render() -> None:
        table = new_table(title=f"Bookings: {reply['event']['title']} ({len(reply['bookings'])})")
        for column in (
            "#",
            "reference",
            "name",
            "organisation",
            "status",
            "channel",
            "price",
            "attendance",
        ):
            table.add_column(column)
        for b in reply["bookings"]:
            status = f"waiting #{b['position']}" if b["status"] == "waitlisted" else b["status"]
            table.add_row(
                str(b["arrival"]),
                b["reference"],
                b["name"],
                b["organisation_name"] or "-",
                status,
                b["channel"],
                b["price"],
                b["attendance"] or "",
            )
        console.print(table)

    emit(options, reply["bookings"], render)
