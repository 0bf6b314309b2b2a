"""Who gets a place: the booking window, capacity, the waiting list, limits per
organisation, the member price, and when a booker may cancel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

Place = Literal["confirmed", "waitlisted"]


class BookingRefused(Exception):
    """Raised when a booking or a cancellation cannot be made; says why in the booker's words."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


@dataclass(frozen=True)
class Opening:
    """What decides whether an event takes a booking right now."""

    status: str
    starts_at: datetime
    booking_opens_at: datetime | None
    booking_closes_at: datetime
    capacity: int
    confirmed: int
    waiting_list: bool
    places_per_organisation: int | None


def membership_active(starts_on: date, ends_on: date | None, on: date) -> bool:
    """Whether a membership covers the day ``on`` (member pricing is by the event's date)."""
    return starts_on <= on and (ends_on is None or on <= ends_on)


def decide_place(
    opening: Opening,
    *,
    now: datetime,
    already_booked: bool,
    organisation_places: int,
) -> Place:
    """Confirmed while places remain, else waitlisted; raise BookingRefused when neither.

    The caller holds the event's lock, so ``confirmed`` cannot move underneath.
    """
    if opening.status != "published":
        raise BookingRefused("closed", f"the event is {opening.status}, not open for booking")
    if opening.booking_opens_at is not None and now < opening.booking_opens_at:
        raise BookingRefused("closed", "bookings for this event have not opened yet")
    if now >= opening.booking_closes_at:
        raise BookingRefused("closed", "bookings for this event have closed")
    if already_booked:
        raise BookingRefused(
            "duplicate", "this email already holds a booking for the event", "email"
        )
    limit = opening.places_per_organisation
    if limit is not None and organisation_places >= limit:
        raise BookingRefused(
            "over_limit",
            f"the organisation already holds {organisation_places} of its {limit} places",
            "organisation_name",
        )
    if opening.confirmed < opening.capacity:
        return "confirmed"
    if not opening.waiting_list:
        raise BookingRefused("full", "the event is full and takes no waiting list")
    return "waitlisted"


def booking_state(opening: Opening, *, now: datetime) -> tuple[str, str | None]:
    """What a stranger could do now: ``open`` (a place is free), ``waiting_list`` (full, but
    it takes a waiting list), or why not: ``closed`` or ``full``, with the reason in words."""
    try:
        place = decide_place(opening, now=now, already_booked=False, organisation_places=0)
    except BookingRefused as refused:
        return refused.code, str(refused)
    return ("open" if place == "confirmed" else "waiting_list"), None


def places_to_promote(*, capacity: int, confirmed: int, waiting: int) -> int:
    """How many from the head of the waiting list get a place now."""
    return max(0, min(capacity - confirmed, waiting))


def price_for(*, is_member: bool, member_price: int, non_member_price: int) -> tuple[int, bool]:
    """The price in pence and whether the member price applied."""
    return (member_price, True) if is_member else (non_member_price, False)


def cancellation_allowed(*, now: datetime, starts_at: datetime) -> None:
    """A booker may cancel until the event starts; after that the place stands."""
    if now >= starts_at:
        raise BookingRefused(
            "closed", "the event has started; a booking can no longer be cancelled"
        )


def promoted_at(created_at: datetime, confirmed_at: datetime | None) -> datetime | None:
    """When a booking that waited got its place; None for one confirmed as it was made
    (in the same instant) or never confirmed."""
    if confirmed_at is None or confirmed_at <= created_at:
        return None
    return confirmed_at
