"""The notifications service: the facts it hears, the commands it answers, and its sender."""

from __future__ import annotations

from pathlib import Path

from contracts.events_v1 import (
    BookingCancelled,
    BookingConfirmed,
    BookingPromoted,
    BookingWaitlisted,
    EventChanged,
    ReminderDue,
)
from contracts.notifications_v1 import (
    AddContact,
    BroadcastStatus,
    ForgetContact,
    ListContacts,
    ResendDelivery,
    SendBroadcast,
    ShowContact,
    Subscribe,
    Unsubscribe,
)
from contracts.subscriptions_v1 import InvoiceIssued, InvoiceOverdue, InvoicePaid, MembershipStarted
from kernel.runtime import Service
from kernel.settings import Settings
from services.notifications import NAME, handlers, store
from services.notifications.handlers.learning import LEARNERS
from services.notifications.sender import run_sender
from services.notifications.templates import templates_for

MIGRATIONS = Path(__file__).parent / "migrations"


def create_service(settings: Settings | None = None) -> Service:
    service = Service(NAME, migrations_dir=MIGRATIONS, settings=settings)
    settings = service.settings

    service.consume(MembershipStarted)(handlers.on_membership_started)
    service.consume(InvoiceIssued)(handlers.on_invoice_issued)
    service.consume(InvoicePaid)(handlers.on_invoice_paid)
    service.consume(InvoiceOverdue)(handlers.on_invoice_overdue)
    # EventCancelled itself names nobody: the BookingCancelled of each booking it
    # cancelled (reason event_cancelled) is what reaches the people.
    service.consume(BookingConfirmed)(handlers.on_booking_confirmed)
    service.consume(BookingWaitlisted)(handlers.on_booking_waitlisted)
    service.consume(BookingPromoted)(handlers.on_booking_promoted)
    service.consume(BookingCancelled)(handlers.on_booking_cancelled)
    service.consume(EventChanged)(handlers.on_event_changed)
    service.consume(ReminderDue)(handlers.on_reminder_due)
    # The directory of people the facts named is built only from those facts, by the
    # same learners the handlers above call first: `vestry rebuild notifications`.
    service.read_model([store.DirectoryEntry.__table__], LEARNERS)

    service.command(AddContact)(handlers.add_contact)
    service.command(ListContacts)(handlers.list_contacts)
    service.command(ShowContact)(handlers.show_contact)
    service.command(Subscribe)(handlers.subscribe)
    service.command(Unsubscribe)(handlers.unsubscribe)
    service.command(ForgetContact)(handlers.forget_contact)
    service.command(ResendDelivery)(handlers.resend_delivery)
    broadcasts = handlers.Broadcasts(settings, templates_for(settings))
    service.command(SendBroadcast)(broadcasts.send)
    service.command(BroadcastStatus)(broadcasts.status)

    service.worker(run_sender)
    service.backlog(store.owed_now)  # health shows mail and SMS still owed
    return service
