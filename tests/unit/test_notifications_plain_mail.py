"""A message written straight to bytes reads, to a mail client, as the same message the
email package builds: headers, both bodies, the calendar entry and any document, whether
the server takes 8-bit bodies or not; and a message it cannot write is built the slow way."""

from __future__ import annotations

import email
import email.policy
import json
import re
from email.message import EmailMessage
from typing import Any

import pytest

from kernel.settings import Settings
from services.notifications import store
from services.notifications.documents import Document
from services.notifications.mailer import POLICY, Mailer
from services.notifications.mime import PlainMail

STRICT = email.policy.default.clone(raise_on_defect=True)
ADVISORY = {
    "reference": "WARP-2026-014",
    "severity": "high",
    "title": "Phishing emails posing as council tax refunds",
    "summary": "Links lead to a fake sign-in page.",
    "action": "Block the sender domain.",
    "topic": "warp",
}
CALENDAR = {
    "uid": "event-1@vestry.invalid",
    "sequence": 2,
    "starts_at": "2027-02-10T10:00:00+00:00",
    "ends_at": "2027-02-10T13:00:00+00:00",
    "summary": "Customer service forum",
    "location": "Preston Guild Hall",
    "status": "CONFIRMED",
}
BOOKING = {
    "name": "Ann Ahmed",
    "reference": "BK7Q2M",
    "event_title": "Customer service forum",
    "starts": "Wed 10 Feb 2027, 10:00",
    "ends": "13:00",
    "where": "Preston Guild Hall",
    "price": "free",
    "calendar": CALENDAR,
}


def broadcast_row(title: str, recipient: str = "ann@bury.example.gov.uk") -> store.Delivery:
    row = store.Delivery(
        id="d-1",
        recipient=recipient,
        channel="email",
        template="security_advisory",
        context=json.dumps({"recipient_name": "Ann", "unsubscribe_url": "https://u.example/x"}),
        broadcast_id="b-1",
    )
    row.broadcast = store.Broadcast(id="b-1", context=json.dumps({**ADVISORY, "title": title}))
    return row


def booking_row(template: str = "booking_confirmed") -> store.Delivery:
    return store.Delivery(
        id="d-2",
        recipient="ann@bury.example.gov.uk",
        channel="email",
        template=template,
        context=json.dumps(BOOKING),
    )


def read(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=STRICT)
    assert isinstance(message, EmailMessage)
    return message


def as_read(message: EmailMessage) -> dict[str, Any]:
    """What a mail client shows: the headers, and each part's type, name and content."""
    parts = [
        (
            part.get_content_type(),
            part.get_param("method"),
            part.get_content_charset(),
            part.get_filename(),
            # A calendar entry is stamped when it is made.
            re.sub(rb"DTSTAMP:\w+", b"", part.get_payload(decode=True) or b"").replace(
                b"\r\n", b"\n"
            ),
        )
        for part in message.walk()
        if not part.is_multipart()
    ]
    headers = ("Subject", "From", "To", "Reply-To", "Message-ID", "List-Unsubscribe")
    return {
        "headers": {name: str(message[name]) for name in headers},
        "structure": [part.get_content_type() for part in message.walk()],
        "parts": parts,
    }


def both_ways(
    mailer: Mailer, row: store.Delivery, documents: list[Document] | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    slow = mailer.compose(row, documents or []).as_bytes(policy=POLICY.clone(linesep="\r\n"))
    fast = mailer.prepare(row, documents or [])
    assert isinstance(fast, PlainMail)
    return as_read(read(slow)), [
        as_read(read(fast.wire(eight_bit=eight_bit))) for eight_bit in (True, False)
    ]


@pytest.mark.parametrize("title", ["Phishing emails", "Refunds of £40 – “urgent” ünïcode"])
@pytest.mark.parametrize("partnership", ["North West Partnership", "Café Partnership"])
def test_a_broadcast_written_directly_reads_as_the_email_package_builds_it(
    title: str, partnership: str
) -> None:
    mailer = Mailer(Settings(partnership_name=partnership, mail_reply_to="Desk <desk@x.example>"))

    slow, fast = both_ways(mailer, broadcast_row(title))

    assert fast == [slow, slow]
    assert title in slow["headers"]["Subject"]


@pytest.mark.parametrize("template", ["booking_confirmed", "booking_cancelled"])
def test_a_booking_with_its_calendar_entry_reads_the_same_written_directly(template: str) -> None:
    row = booking_row(template)
    row.context = json.dumps(
        {**BOOKING, "was": "confirmed", "refund": "", "by_organiser": False, "reason": "x"}
    )

    slow, fast = both_ways(Mailer(Settings()), row)

    assert fast == [slow, slow]
    assert ("text/calendar", "CANCEL" if "cancel" in template else "REQUEST") in [
        part[:2] for part in slow["parts"]
    ]


def test_a_document_is_attached_the_same_written_directly() -> None:
    row = store.Delivery(
        id="d-3",
        recipient="ann@bury.example.gov.uk",
        channel="email",
        template="welcome",
        context=json.dumps({"member_name": "Bury", "tier": "full", "starts_on": "2026-04-01"}),
    )
    document = Document(
        content=b"%PDF-1.4 not really", maintype="application", subtype="pdf", filename="I-1.pdf"
    )

    slow, fast = both_ways(Mailer(Settings()), row, [document])

    assert fast == [slow, slow]


def test_an_address_beyond_ascii_is_left_to_the_email_package() -> None:
    mailer = Mailer(Settings())

    message = mailer.prepare(broadcast_row("Patch now", recipient="ünï@exämple.org"))

    assert isinstance(message, EmailMessage)
