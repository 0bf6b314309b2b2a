"""The events service as a FastStream app: commands in, facts out, memberships in."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from contracts import events_v1 as contract
from contracts.people_v1 import ExportPersonFromEvents, PersonErasureRequested
from contracts.subscriptions_v1 import MembershipChanged, MembershipEnded, MembershipStarted
from kernel.runtime import Service
from kernel.settings import Settings
from services.events import NAME, handlers
from services.events.settings import EventsSettings
from services.events.store import MembershipView
from services.events.timekeeper import keep_time

MIGRATIONS = Path(__file__).parent / "migrations"


def utc_now() -> datetime:
    return datetime.now(UTC)


def create_service(
    settings: Settings | None = None,
    *,
    events_settings: EventsSettings | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> Service:
    """The events service; ``clock`` is injectable so tests can move time."""
    service = Service(NAME, migrations_dir=MIGRATIONS, settings=settings)
    own = events_settings or EventsSettings()
    if own.feed_url is None:  # the feeds link to the public site's pages
        own = own.model_copy(
            update={"feed_url": f"{service.settings.public_url.rstrip('/')}/events"}
        )
    events = handlers.EventCommands(own, clock)
    bookings = handlers.BookingCommands(own, clock)
    people = handlers.People(own)
    reports = handlers.ReportCommands(own, clock)
    for model, handler in (
        (contract.CreateEvent, events.create_event),
        (contract.UpdateEvent, events.update_event),
        (contract.PublishEvent, events.publish_event),
        (contract.CancelEvent, events.cancel_event),
        (contract.ListEvents, events.list_events),
        (contract.ShowEvent, events.show_event),
        (contract.EventFeed, events.feed),
        (contract.EventCalendar, events.event_calendar),
        (contract.EventReport, events.report),
        (contract.ChannelShiftReport, reports.channel_shift),
        (contract.OrganisationsReport, reports.organisations),
        (contract.CancelBooking, bookings.cancel_booking),
        (contract.ShowBooking, bookings.show_booking),
        (contract.ListBookings, bookings.list_bookings),
        (contract.CheckIn, bookings.check_in),
        (ExportPersonFromEvents, people.export_person),
    ):
        service.command(model)(handler)
    # A rush of bookings is answered a batch per transaction, still in order of arrival.
    service.command_batch(contract.BookPlace, max_batch=own.booking_batch)(bookings.book_places)
    memberships = {
        MembershipStarted: handlers.on_membership_started,
        MembershipChanged: handlers.on_membership_changed,
        MembershipEnded: handlers.on_membership_ended,
    }
    for model, handler in memberships.items():
        service.consume(model)(handler)
    # The view of memberships is built only from subscriptions' facts: `vestry rebuild events`.
    service.read_model([MembershipView.__table__], memberships)
    service.consume(PersonErasureRequested)(people.erase_person)

    async def timekeeper(running: Service) -> None:
        await keep_time(
            running.sessions,
            clock,
            poll_s=own.timekeeper_poll_s,
            retention_days=own.booking_retention_days,
            wake_relay=running.wake_relay,
        )

    service.worker(timekeeper)
    return service
