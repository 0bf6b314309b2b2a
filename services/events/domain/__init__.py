"""Event and booking rules, free of I/O: no broker, no store, no clock of their own.

- ``schedule``: London wall-clock times, booking windows and event validity.
- ``booking``: who gets a place, the waiting list, prices and cancellations.
- ``reminders``: when each confirmed booker is reminded.
- ``contact``: phone numbers and booking references.
- ``report``: bookings and attendance, as partnerships report them.
- ``erasure``: what erasure and the retention period leave of a booking.
"""

from services.events.domain.booking import (
    BookingRefused,
    Place,
    booking_state,
    cancellation_allowed,
    decide_place,
    membership_active,
    places_to_promote,
    price_for,
    promoted_at,
)
from services.events.domain.contact import InvalidPhone, new_reference, normalise_phone
from services.events.domain.erasure import (
    RedactedBooker,
    is_redacted,
    phone_to_match,
    redacted_booker,
    retention_cutoff,
)
from services.events.domain.reminders import DEFAULT_OFFSETS_H, ReminderSlot, reminder_slots
from services.events.domain.report import attendance_report
from services.events.domain.schedule import (
    LONDON,
    EventInvalid,
    check_capacity_change,
    check_event,
    london,
    to_utc,
)

__all__ = [
    "DEFAULT_OFFSETS_H",
    "LONDON",
    "BookingRefused",
    "EventInvalid",
    "InvalidPhone",
    "Place",
    "RedactedBooker",
    "ReminderSlot",
    "attendance_report",
    "booking_state",
    "cancellation_allowed",
    "check_capacity_change",
    "check_event",
    "decide_place",
    "is_redacted",
    "london",
    "membership_active",
    "new_reference",
    "normalise_phone",
    "phone_to_match",
    "places_to_promote",
    "price_for",
    "promoted_at",
    "redacted_booker",
    "reminder_slots",
    "retention_cutoff",
    "to_utc",
]
