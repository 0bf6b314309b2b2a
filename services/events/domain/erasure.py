"""What erasure does to a booking, whether a person asked for it or the retention
period ran out: the booker's name, email and phone give way to stand-ins.

What a report counts stays: the reference, the event, the status and its dates,
the channel, the member and organisation, the price and the attendance. None of
these names the person, and no law asks the events service to keep more (the
invoices that must be kept are the subscriptions service's).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from contracts.personal import ERASED_NAME, erased_email, is_erased_email
from services.events.domain.contact import InvalidPhone, normalise_phone


@dataclass(frozen=True)
class RedactedBooker:
    """A booking's booker once erased: nobody to name, write to, ring or text."""

    name: str
    email: str
    phone: None
    sms: bool

    def columns(self) -> dict[str, object]:
        return asdict(self)


def redacted_booker(booking_id: str) -> RedactedBooker:
    """The stand-ins for the booker of the booking ``booking_id``.

    The email is the booking's own: an event holds one live booking per email, so
    two erased bookers of one event cannot share a stand-in.
    """
    return RedactedBooker(name=ERASED_NAME, email=erased_email(booking_id), phone=None, sms=False)


def is_redacted(email: str) -> bool:
    """Whether a booking's booker has been erased: nobody to remind or tell."""
    return is_erased_email(email)


def retention_cutoff(now: datetime, retention_days: int) -> datetime | None:
    """Bookings of an event that ended before this instant are redacted; None when
    bookings are kept for good (a retention of 0 days)."""
    if retention_days <= 0:
        return None
    return now - timedelta(days=retention_days)


def phone_to_match(raw: str | None, *, region: str) -> str | None:
    """The phone a request names, in the form bookings keep it (E.164).

    A number that is not a mobile is matched as given: no booking holds one, so it
    finds nothing, but it is no reason to refuse an erasure or an export.
    """
    if not raw or not raw.strip():
        return None
    try:
        return normalise_phone(raw, region=region)
    except InvalidPhone:
        return raw.strip()
