"""Signed links: what a stranger may follow out of a message (a booking's own page,
an unsubscribe) carries an HMAC of what it names, so a changed link is refused.

The service that writes a link and the one that answers it share only the secret.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote


def signature(secret: str, *parts: str) -> str:
    """HMAC-SHA256 over ``parts`` joined by ':', as 32 hex digits."""
    message = ":".join(parts).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


def is_genuine(secret: str, given: str, *parts: str) -> bool:
    """Whether ``given`` is the signature of ``parts``, compared in constant time."""
    return hmac.compare_digest(signature(secret, *parts), given)


def booking_url(base: str, secret: str, reference: str) -> str:
    """The link in every booking message that opens the booker's own page."""
    reference = reference.upper()
    return (
        f"{base.rstrip('/')}/bookings/{quote(reference)}"
        f"?s={signature(secret, 'booking', reference)}"
    )


def booking_link_is_genuine(secret: str, reference: str, given: str) -> bool:
    return is_genuine(secret, given, "booking", reference.upper())


def unsubscribe_url(base: str, secret: str, contact_id: str, topic: str) -> str:
    """A broadcast's unsubscribe link (RFC 8058 one-click): one contact, one topic."""
    return (
        f"{base.rstrip('/')}/unsubscribe?c={quote(contact_id)}&t={quote(topic)}"
        f"&s={signature(secret, contact_id, topic)}"
    )


def unsubscribe_link_is_genuine(secret: str, contact_id: str, topic: str, given: str) -> bool:
    return is_genuine(secret, given, contact_id, topic)


def pay_url(base: str, secret: str, number: str) -> str:
    """The "pay this invoice" link in every invoice message: one invoice's payment page."""
    number = number.upper()
    return f"{base.rstrip('/')}/pay/{quote(number)}?s={signature(secret, 'pay', number)}"


def pay_link_is_genuine(secret: str, number: str, given: str) -> bool:
    return is_genuine(secret, given, "pay", number.upper())
