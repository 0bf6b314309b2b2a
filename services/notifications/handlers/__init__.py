"""Notifications' handlers: one function per fact it hears and per command it answers."""

from services.notifications.handlers.broadcasts import Broadcasts
from services.notifications.handlers.completion import complete_broadcast, settle_broadcast
from services.notifications.handlers.contacts import (
    add_contact,
    forget_contact,
    list_contacts,
    resend_delivery,
    show_contact,
    subscribe,
    unsubscribe,
)
from services.notifications.handlers.facts import (
    on_booking_cancelled,
    on_booking_confirmed,
    on_booking_promoted,
    on_booking_waitlisted,
    on_event_changed,
    on_invoice_issued,
    on_invoice_overdue,
    on_invoice_paid,
    on_membership_started,
    on_reminder_due,
)
from services.notifications.handlers.people import export_person, on_person_erasure_requested

__all__ = [
    "Broadcasts",
    "add_contact",
    "complete_broadcast",
    "export_person",
    "forget_contact",
    "list_contacts",
    "on_booking_cancelled",
    "on_booking_confirmed",
    "on_booking_promoted",
    "on_booking_waitlisted",
    "on_event_changed",
    "on_invoice_issued",
    "on_invoice_overdue",
    "on_invoice_paid",
    "on_membership_started",
    "on_person_erasure_requested",
    "on_reminder_due",
    "resend_delivery",
    "settle_broadcast",
    "show_contact",
    "subscribe",
    "unsubscribe",
]
