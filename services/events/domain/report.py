"""What partnerships report about an event: bookings, attendance, reach."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any, Protocol


class BookingLine(Protocol):
    status: str
    attendance: str | None
    channel: str
    organisation_key: str | None


def attendance_report(bookings: Iterable[BookingLine]) -> dict[str, Any]:
    """Booked (confirmed places), attended, no-shows, organisations attending, bookings by channel.

    Organisations are counted by member id, or by name for non-members; a
    person booking for no organisation does not add one.
    """
    rows = list(bookings)
    confirmed = [row for row in rows if row.status == "confirmed"]
    attended = [row for row in confirmed if row.attendance == "attended"]
    return {
        "booked": len(confirmed),
        "waiting": sum(row.status == "waitlisted" for row in rows),
        "cancelled": sum(row.status == "cancelled" for row in rows),
        "attended": len(attended),
        "no_shows": sum(row.attendance == "no_show" for row in confirmed),
        "not_yet_recorded": sum(row.attendance is None for row in confirmed),
        "organisations_attending": len(
            {row.organisation_key for row in attended if row.organisation_key}
        ),
        "by_channel": dict(
            sorted(Counter(row.channel for row in rows if row.status != "cancelled").items())
        ),
    }
