"""The UID a booking's calendar entries share, wherever they are made.

The events service gives every calendar entry the *event's* UID, the one its public
feed and ``/events/{id}.ics`` keep. A booking's entries are the booking's, though: a
person who cancels and books again holds two bookings, and a cancellation of the first
must not hide the second. So the invitations the notifications service sends and the
file the booker's own page offers (the events service's) carry one UID per booking,
derived here from the event's UID and the booking's reference: a calendar that has
one replaces it with the other, instead of holding two.
"""

from __future__ import annotations

import hashlib


def invitation_uid(event_uid: str, reference: str) -> str:
    """One booking's UID: stable for the booking, distinct from the event's and from every
    other booking's (the same person booking again gets another).

    The reference is digested, not spelt out: it is half of what opens the booker's own
    page, and calendars get shared.
    """
    digest = hashlib.sha256(f"{event_uid}\n{reference.strip().upper()}".encode()).hexdigest()
    local, at, domain = event_uid.rpartition("@")
    if not at:
        local, domain = event_uid, ""
    return f"{local}-booking-{digest[:20]}" + (f"@{domain}" if domain else "")
