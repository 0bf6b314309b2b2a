"""How the store's rows read in facts and in replies."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from contracts.events_v1 import Attendee, Booker, CalendarEntry
from contracts.money import Money
from services.events.domain import london, promoted_at
from services.events.store import Booking, Event, NewBooking, Reminder

UID_DOMAIN = "events.vestry"


def calendar_entry(
    event: Event, *, sequence: int | None = None, cancelled: bool = False
) -> CalendarEntry:
    """The event as an iCalendar entry: one UID for its whole life, SEQUENCE as given or its own.

    The UID is the event's, as the public feed and ``/events/{id}.ics`` give it. A
    booker's invitation is their booking's: the notifications service derives a UID
    per booking from this one and the booking's reference, and sends this SEQUENCE,
    which for any booking only ever rises (a change raises the event's; a booker's
    cancellation is sent one above it).
    """
    return CalendarEntry(
        uid=f"{event.id}@{UID_DOMAIN}",
        sequence=event.sequence if sequence is None else sequence,
        summary=event.title,
        description=event.description,
        starts_at=event.starts_at,
        ends_at=event.ends_at,
        location=event.venue,
        url=event.online_url,
        status="CANCELLED" if cancelled or event.status == "cancelled" else "CONFIRMED",
    )


def cancelled_booking_entry(event: Event) -> CalendarEntry:
    """A cancelled booking's entry: one above every REQUEST its invitation was sent with
    (each carried the event's SEQUENCE of its day, never above today's). The event itself
    has not changed, so its own SEQUENCE stays; a rebooking is another booking, with an
    invitation UID of its own (``contracts.calendar.invitation_uid``)."""
    return calendar_entry(event, sequence=event.sequence + 1, cancelled=True)


def booker(booking: Booking | NewBooking) -> Booker:
    # Built without validating again: every field was validated when the booking was
    # made (BookPlace: the email as an EmailStr, the phone to E.164), and checking the
    # email twice was the dearest part of a booking in a rush.
    return Booker.model_construct(
        name=booking.name, email=booking.email, phone=booking.phone, sms=booking.sms
    )


def attendee(booking: Booking) -> Attendee:
    return Attendee(booking_id=booking.id, reference=booking.reference, booker=booker(booking))


def booking_fields(booking: Booking | NewBooking, event: Event) -> dict[str, Any]:
    """The fields every booking fact shares."""
    return {
        "booking_id": booking.id,
        "reference": booking.reference,
        "event_id": event.id,
        "event_title": event.title,
        "booker": booker(booking),
        "member_id": booking.member_id,
        "organisation_name": booking.organisation_name,
        "channel": booking.channel,
    }


def pence(amount: int) -> Money:
    return Money(amount_minor=amount)


def shown(amount: int) -> str:
    return "free" if amount == 0 else f"£{amount // 100:,}.{amount % 100:02d}"


def event_view(event: Event, *, waiting: int) -> dict[str, Any]:
    return {
        "event_id": event.id,
        "kind": event.kind,
        "programme": event.programme,
        "title": event.title,
        "description": event.description,
        "venue": event.venue,
        "online_url": event.online_url,
        "starts_at": event.starts_at.isoformat(),
        "ends_at": event.ends_at.isoformat(),
        "starts_london": london(event.starts_at).strftime("%a %d %b %Y %H:%M"),
        "ends_london": london(event.ends_at).strftime("%H:%M"),
        "status": event.status,
        "capacity": event.capacity,
        "confirmed": event.confirmed,
        "places_left": event.capacity - event.confirmed,
        "waiting": waiting,
        "waiting_list": event.waiting_list,
        "member_price_minor": event.member_price_minor,
        "non_member_price_minor": event.non_member_price_minor,
        "member_price": shown(event.member_price_minor),
        "non_member_price": shown(event.non_member_price_minor),
        "booking_opens_at": event.booking_opens_at.isoformat() if event.booking_opens_at else None,
        "booking_closes_at": event.booking_closes_at.isoformat(),
        "places_per_organisation": event.places_per_organisation,
        "sequence": event.sequence,
    }


def booking_view(
    booking: Booking | NewBooking, event: Event, *, position: int | None
) -> dict[str, Any]:
    status: Literal["confirmed", "waitlisted", "cancelled"] = booking.status  # type: ignore[assignment]
    return {
        "reference": booking.reference,
        "booking_id": booking.id,
        "status": status,
        "position": position,
        "event_id": event.id,
        "event_title": event.title,
        "event_status": event.status,
        "starts_london": london(event.starts_at).strftime("%a %d %b %Y %H:%M"),
        "name": booking.name,
        "email": booking.email,
        "phone": booking.phone,
        "sms": booking.sms,
        "member_id": booking.member_id,
        "organisation_name": booking.organisation_name,
        "channel": booking.channel,
        "price_minor": booking.price_minor,
        "price": shown(booking.price_minor),
        "member_price": booking.member_price,
        "arrival": booking.arrival,
        "attendance": booking.attendance,
        "cancelled_reason": booking.cancelled_reason,
    }


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def decimal(amount: int) -> str:
    """Pence as pounds, for an export: 9500 -> "95.00"."""
    return f"{amount // 100}.{amount % 100:02d}"


def booking_record(booking: Booking, event: Event) -> dict[str, Any]:
    """A booking as a subject-access export gives it to the booker: all the store holds."""
    return {
        "reference": booking.reference,
        "event_id": event.id,
        "event_title": event.title,
        "event_starts_at": event.starts_at.isoformat(),
        "status": booking.status,
        "name": booking.name,
        "email": booking.email,
        "phone": booking.phone,
        "sms": booking.sms,
        "channel": booking.channel,
        "organisation_name": booking.organisation_name,
        "member_id": booking.member_id,
        "price": decimal(booking.price_minor),
        "currency": "GBP",
        "member_price": booking.member_price,
        "booked_at": booking.created_at.isoformat(),
        "confirmed_at": iso(booking.confirmed_at),
        "promoted_at": iso(promoted_at(booking.created_at, booking.confirmed_at)),
        "cancelled_at": iso(booking.cancelled_at),
        "cancelled_reason": booking.cancelled_reason,
        "attendance": booking.attendance,
        "attendance_recorded_at": iso(booking.attendance_at),
    }


def reminder_record(reminder: Reminder, reference: str) -> dict[str, Any]:
    """A reminder of one of the person's bookings, as an export gives it."""
    return {
        "reference": reference,
        "event_id": reminder.event_id,
        "hours_before": reminder.hours_before,
        "due_at": reminder.due_at.isoformat(),
        "status": reminder.status,
        "sent_at": iso(reminder.sent_at),
    }
