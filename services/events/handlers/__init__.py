"""Events' handlers: a method per command, a function per fact.

Every command handler runs inside the transaction ``kernel.commands.answer``
opened (bookings: a batch of them in the one ``kernel.commands.CommandBatcher``
opened); what it publishes goes to the outbox of that transaction. A handler
that changes an event's places locks the event's row first, so concurrent
bookings, cancellations and replicas take their turns.
"""

from services.events.handlers.bookings import BookingCommands
from services.events.handlers.events import EventCommands
from services.events.handlers.memberships import (
    on_membership_changed,
    on_membership_ended,
    on_membership_started,
)
from services.events.handlers.people import People
from services.events.handlers.places import Places, attendance_recorded
from services.events.handlers.reports import ReportCommands

__all__ = [
    "BookingCommands",
    "EventCommands",
    "People",
    "Places",
    "ReportCommands",
    "attendance_recorded",
    "on_membership_changed",
    "on_membership_ended",
    "on_membership_started",
]
