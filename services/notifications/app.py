"""The notifications service: the facts it hears, the commands it answers, and its sender."""

from __future__ import annotations

from functools import partial
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
    ListDeliveries,
    PreviewBroadcast,
    ResendDelivery,
    SendBroadcast,
    ShowContact,
    Subscribe,
    Unsubscribe,
)
from contracts.people_v1 import ExportPersonFromNotifications, PersonErasureRequested
from contracts.subscriptions_v1 import (
    CreditNoteIssued,
    InvoiceIssued,
    InvoiceOverdue,
    InvoicePaid,
    MembershipStarted,
)
from kernel.runtime import Service
from kernel.settings import Settings
from services.notifications import NAME, handlers, store
from services.notifications.handlers.deliveries import list_deliveries
from services.notifications.handlers.facts import on_credit_note_issued
from services.notifications.handlers.learning import LEARNERS
from services.notifications.handlers.previews import Previews
from services.notifications.sender import run_sender
from services.notifications.sms import segment_limit_check
from services.notifications.templates import templates_for

MIGRATIONS = Path(__file__).parent / "migrations"


def create_service(settings: Settings | None = None) -> Service:
    service = Service(NAME, migrations_dir=MIGRATIONS, settings=settings)
    settings = service.settings
    templates = templates_for(settings)
    # Every booking SMS is held to the segment limit before it is planned.
    fit_sms = segment_limit_check(settings, templates)

    service.consume(MembershipStarted)(handlers.on_membership_started)
    service.consume(InvoiceIssued)(handlers.on_invoice_issued)
    service.consume(InvoicePaid)(handlers.on_invoice_paid)
    service.consume(InvoiceOverdue)(handlers.on_invoice_overdue)
    service.consume(CreditNoteIssued)(on_credit_note_issued)
    # EventCancelled itself names nobody: the BookingCancelled of each booking it
    # cancelled (reason event_cancelled) is what reaches the people.
    service.consume(BookingConfirmed)(partial(handlers.on_booking_confirmed, fit_sms=fit_sms))
    service.consume(BookingWaitlisted)(partial(handlers.on_booking_waitlisted, fit_sms=fit_sms))
    service.consume(BookingPromoted)(partial(handlers.on_booking_promoted, fit_sms=fit_sms))
    service.consume(BookingCancelled)(partial(handlers.on_booking_cancelled, fit_sms=fit_sms))
    service.consume(EventChanged)(partial(handlers.on_event_changed, fit_sms=fit_sms))
    service.consume(ReminderDue)(partial(handlers.on_reminder_due, fit_sms=fit_sms))
    # A person's rights: erasure (a fact every holder acts on) and access (a command).
    service.consume(PersonErasureRequested)(handlers.on_person_erasure_requested)
    service.command(ExportPersonFromNotifications)(handlers.export_person)
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
    broadcasts = handlers.Broadcasts(settings, templates)
    service.command(SendBroadcast)(broadcasts.send)
    service.command(BroadcastStatus)(broadcasts.status)
    # The back office's composer and its ledger of deliveries.
    service.command(PreviewBroadcast)(Previews(settings, templates).preview)
    service.command(ListDeliveries)(list_deliveries)

    service.worker(run_sender)
    service.backlog(store.owed_now)  # health shows mail and SMS still owed
    return service
