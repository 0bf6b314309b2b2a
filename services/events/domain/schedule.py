"""Times as people enter and see them (Europe/London) and as they are stored (UTC);
what makes an event's schedule, window and capacity acceptable."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")


class EventInvalid(ValueError):
    """Raised when an event's details break a rule; names the field at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def to_utc(moment: datetime) -> datetime:
    """A naive time is London wall-clock time; any aware time is converted to UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=LONDON)
    return moment.astimezone(UTC)


def london(moment: datetime) -> datetime:
    """The instant as people in the partnership see it."""
    return moment.astimezone(LONDON)


def check_event(
    *,
    starts_at: datetime,
    ends_at: datetime,
    booking_opens_at: datetime | None,
    booking_closes_at: datetime,
    member_price: int,
    non_member_price: int,
    venue: str | None,
    online_url: str | None,
) -> None:
    """Raise EventInvalid for the first rule an event's details break."""
    if ends_at <= starts_at:
        raise EventInvalid("the event must end after it starts", "ends_at")
    if booking_closes_at > starts_at:
        raise EventInvalid("bookings must close by the time the event starts", "booking_closes_at")
    if booking_opens_at is not None and booking_opens_at >= booking_closes_at:
        raise EventInvalid("bookings must open before they close", "booking_opens_at")
    if member_price < 0:
        raise EventInvalid("a price cannot be negative", "member_price")
    if non_member_price < 0:
        raise EventInvalid("a price cannot be negative", "non_member_price")
    if not (venue or online_url):
        raise EventInvalid("give a venue, an online link or both", "venue")


def check_capacity_change(new_capacity: int, confirmed: int) -> None:
    """Capacity may not fall below the places already confirmed: nobody is bumped silently."""
    if new_capacity < confirmed:
        raise EventInvalid(
            f"capacity {new_capacity} is below the {confirmed} places already confirmed; "
            "cancel bookings first",
            "capacity",
        )
