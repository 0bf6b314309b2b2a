"""The message types Vestry sends, their channels, and sample data to preview them with.

Each sample holds every variable its templates use, as the handlers would put
it in the ledger; a template that needs more fails its preview, and the test
that renders every template with its sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_CALENDAR = {
    "uid": "evt-lean-2026@vestry",
    "sequence": 0,
    "summary": "Lean in local government",
    "description": "A day on process improvement for council service teams.",
    "starts_at": "2026-06-09T09:00:00Z",
    "ends_at": "2026-06-09T16:00:00Z",
    "location": "Manchester Central Library, St Peter's Square, Manchester M2 5PD",
    "url": None,
    "status": "CONFIRMED",
    "timezone": "Europe/London",
}
_BOOKING = {
    "name": "Priya Shah",
    "event_title": "Lean in local government",
    "reference": "BK7Q2M4X",
    "starts": "Tue 9 Jun 2026, 10:00",
    "ends": "Tue 9 Jun 2026, 17:00",
    "where": "Manchester Central Library, St Peter's Square, Manchester M2 5PD",
    "price": "£95.00",
    "calendar": _CALENDAR,
}


@dataclass(frozen=True)
class MessageType:
    name: str
    description: str
    channels: tuple[str, ...]
    sample: dict[str, Any]
    broadcast: bool = False


MESSAGE_TYPES: dict[str, MessageType] = {
    spec.name: spec
    for spec in (
        MessageType(
            "welcome",
            "A member joined: its billing contact is welcomed.",
            ("email",),
            {"member_name": "Bury Council", "tier": "upper-tier", "starts_on": "2026-04-01"},
        ),
        MessageType(
            "invoice_issued",
            "An invoice was issued (its PDF, printed by subscriptions, attached when sent).",
            ("email",),
            {
                "number": "INV-000017",
                "billed_name": "Bury Council",
                "year": 2026,
                "issued_on": "1 Apr 2026",
                "due_on": "1 May 2026",
                "lines": [
                    {
                        "description": "Subscription 2026/27, upper tier",
                        "net": "£9,000.00",
                        "vat": "£1,800.00",
                    }
                ],
                "net": "£9,000.00",
                "vat": "£1,800.00",
                "gross": "£10,800.00",
            },
        ),
        MessageType(
            "payment_received",
            "A payment was recorded against an invoice.",
            ("email",),
            {
                "number": "INV-000017",
                "amount": "£5,000.00",
                "outstanding": "£5,800.00",
                "fully_paid": False,
                "received_on": "12 May 2026",
            },
        ),
        MessageType(
            "invoice_overdue",
            "An invoice is overdue: first, second or final reminder.",
            ("email",),
            {
                "number": "INV-000017",
                "stage": "second",
                "days_overdue": 30,
                "due_on": "1 May 2026",
                "outstanding": "£10,800.00",
                "billed_name": "Bury Council",
            },
        ),
        MessageType(
            "booking_confirmed",
            "A booking got a place (the .ics attached).",
            ("email", "sms"),
            _BOOKING,
        ),
        MessageType(
            "booking_waitlisted",
            "A booking joined the waiting list, with its position.",
            ("email", "sms"),
            {**_BOOKING, "position": 3},
        ),
        MessageType(
            "booking_promoted",
            "A waiting booking got a place (the .ics attached).",
            ("email", "sms"),
            _BOOKING,
        ),
        MessageType(
            "booking_cancelled",
            "The booker cancelled a booking (a cancelling .ics attached).",
            ("email", "sms"),
            {**_BOOKING, "was": "confirmed"},
        ),
        MessageType(
            "event_changed",
            "A booked event moved in time or place (the updated .ics attached).",
            ("email", "sms"),
            {**_BOOKING, "changed": ["starts_at", "venue"]},
        ),
        MessageType(
            "event_cancelled",
            "A booked event was cancelled (a cancelling .ics attached), with the organisers' "
            "reason when they gave one.",
            ("email", "sms"),
            {**_BOOKING, "why": "The speaker is ill; we will offer a new date."},
        ),
        MessageType(
            "reminder",
            "A booked event is coming up.",
            ("email", "sms"),
            {**_BOOKING, "hours_before": 24},
        ),
        MessageType(
            "broadcast",
            "A notice to a topic's subscribers: headline and body.",
            ("email", "sms"),
            {
                "headline": "Bin collections move a day later next week",
                "body": "Because of the bank holiday, every collection from Monday 25 May moves one "
                "day later, Saturday included.",
                "recipient_name": "Priya Shah",
                "topic": "waste_and_recycling",
                "unsubscribe_url": "https://vestry.invalid/unsubscribe?c=1&t=waste&s=0",
            },
            broadcast=True,
        ),
        MessageType(
            "security_advisory",
            "A WARP security advisory to the warp topic.",
            ("email", "sms"),
            {
                "reference": "WARP-2026-014",
                "severity": "high",
                "title": "Phishing emails posing as council tax refunds",
                "summary": "Staff in three member councils received emails with links to a fake "
                "sign-in page that harvests Microsoft 365 credentials.",
                "action": "Block the sender domain, warn staff and reset any password typed in.",
                "recipient_name": "Priya Shah",
                "topic": "warp",
                "unsubscribe_url": "https://vestry.invalid/unsubscribe?c=1&t=warp&s=0",
            },
            broadcast=True,
        ),
    )
}
