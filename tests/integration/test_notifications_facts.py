"""Each fact a person should hear about becomes the right message: waiting list,
promotion, cancellation, a moved or cancelled event, reminders, invoices and payments."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, date, datetime, timedelta

from icalendar import Calendar
from nats.aio.client import Client
from nats.aio.msg import Msg

from contracts import Envelope
from contracts.events_v1 import (
    Booker,
    BookPlace,
    CalendarEntry,
    CancelBooking,
    CancelEvent,
    ReminderDue,
    UpdateEvent,
)
from contracts.money import Money
from contracts.subscriptions_v1 import (
    DocumentLine,
    InvoiceIssued,
    InvoiceOverdue,
    InvoicePaid,
    ShowDocument,
)
from contracts.system_v1 import Reply
from kernel.commands import request
from kernel.settings import Settings
from services.notifications.app import create_service
from services.notifications.sms import read_captured
from tests.conftest import Mailbox, eventually
from tests.events_support import EVENT_DAY, Clock, events_service, published_event
from tests.notifications_support import quick
from vestry.mailcapture import CapturedMail


def _calendar(mail: CapturedMail) -> Calendar | None:
    for part in mail.message.iter_attachments():
        if part.get_content_type() == "text/calendar":
            return Calendar.from_ical(part.get_payload(decode=True))
    return None


async def test_waiting_list_promotion_move_and_cancellation_each_reach_the_booker(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    settings = quick(settings)
    async with events_service(settings, Clock()), create_service(settings).running():
        event_id = await published_event(nc, capacity=1)
        first = await request(
            nc, BookPlace(event_id=event_id, name="Ann Ahmed", email="ann@bury.example.gov.uk")
        )
        await request(
            nc,
            BookPlace(
                event_id=event_id,
                name="Ben Bell",
                email="ben@wigan.example.gov.uk",
                phone="07400 222333",
                sms=True,
            ),
        )
        await eventually(lambda: len(mailbox.mails()) == 2, what="confirmed + waitlisted")
        await request(nc, CancelBooking(reference=first["reference"]))
        await eventually(lambda: len(mailbox.mails()) == 4, what="cancelled + promoted")
        await request(
            nc,
            UpdateEvent(
                event_id=event_id,
                starts_at=EVENT_DAY + timedelta(days=1),
                ends_at=EVENT_DAY + timedelta(days=1, hours=3),
            ),
        )
        await eventually(lambda: len(mailbox.mails()) == 5, what="moved")
        await request(nc, CancelEvent(event_id=event_id, reason="Venue flooded"))
        await eventually(lambda: len(mailbox.mails()) == 6, what="event cancelled")
        await eventually(lambda: len(read_captured(settings.data_dir / "sms")) == 4, what="SMS")

    by_person: dict[str, list[str]] = {}
    for mail in mailbox.mails():
        by_person.setdefault(mail.to, []).append(mail.subject.strip().split(":")[0])
    assert by_person["ann@bury.example.gov.uk"] == ["Booked", "Cancelled"]
    assert by_person["ben@wigan.example.gov.uk"] == [
        "Waiting list",
        "A place came free",
        "Changed",
        "Cancelled",
    ]
    ben = [m for m in mailbox.mails() if m.to == "ben@wigan.example.gov.uk"]
    assert "position 1" in ben[0].subject
    promoted, moved, cancelled = (_calendar(m) for m in ben[1:])
    assert promoted is not None and moved is not None and cancelled is not None
    (moved_event,) = moved.walk("VEVENT")
    assert moved_event.decoded("DTSTART") == EVENT_DAY + timedelta(days=1)
    assert int(moved_event["SEQUENCE"]) > int(promoted.walk("VEVENT")[0]["SEQUENCE"])
    assert str(cancelled["METHOD"]) == "CANCEL"
    ann_cancelled = next(
        m for m in mailbox.mails() if m.to == "ann@bury.example.gov.uk" and "Cancelled" in m.subject
    )
    assert str(_calendar(ann_cancelled)["METHOD"]) == "CANCEL"  # type: ignore[index]
    texts = [s.text for s in read_captured(settings.data_dir / "sms")]
    assert [t.split(": ", 1)[1].split(" ")[0] for t in texts] == ["Lean", "a", "Lean", "sorry,"]


async def test_reminders_and_invoices_reach_their_people(
    settings: Settings, nc: Client, mailbox: Mailbox, streams: None
) -> None:
    settings = quick(settings)
    js = nc.jetstream()
    calendar = CalendarEntry(
        uid="evt-1@vestry",
        sequence=0,
        summary="Customer service forum",
        description="",
        starts_at=datetime(2027, 3, 3, 10, tzinfo=UTC),
        ends_at=datetime(2027, 3, 3, 12, tzinfo=UTC),
        location="Preston Guild Hall",
        status="CONFIRMED",
    )
    facts = [
        ReminderDue(
            booking_id="b-1",
            reference="BK1",
            event_id="e-1",
            event_title="Customer service forum",
            booker=Booker(name="Cat Cole", email="cat@preston.example.gov.uk"),
            channel="web",
            reminder_id="r-1",
            due_at=datetime(2027, 3, 2, 10, tzinfo=UTC),
            hours_before=24,
            calendar=calendar,
        ),
        InvoiceIssued(
            invoice_id="i-1",
            number="INV-000007",
            purpose="recurring",
            year=2026,
            member_id="m-1",
            billed_name="Bury Council",
            billing_email="accounts@bury.example.gov.uk",
            issued_on=date(2026, 4, 1),
            due_on=date(2026, 5, 1),
            lines=[
                DocumentLine(
                    description="Subscription 2026/27",
                    months=12,
                    net=Money(amount_minor=900000),
                    vat=Money(amount_minor=180000),
                )
            ],
            net=Money(amount_minor=900000),
            vat=Money(amount_minor=180000),
            gross=Money(amount_minor=1080000),
        ),
        InvoicePaid(
            invoice_id="i-1",
            number="INV-000007",
            payment_id="p-1",
            amount=Money(amount_minor=1080000),
            outstanding=Money(amount_minor=0),
            fully_paid=True,
            received_on=date(2026, 4, 20),
            billing_email="accounts@bury.example.gov.uk",
        ),
        InvoiceOverdue(
            invoice_id="i-2",
            number="INV-000008",
            stage="final",
            days_overdue=60,
            due_on=date(2026, 5, 1),
            outstanding=Money(amount_minor=240000),
            billed_name="Wyre Council",
            billing_email="accounts@wyre.example.gov.uk",
        ),
    ]
    # Subscriptions, stood in for: the invoice's PDF, asked for by number when it is sent.
    printed = b"%PDF-1.7 INV-000007 stood in for\n%%EOF\n"
    asked: list[dict[str, object]] = []

    async def show_document(msg: Msg) -> None:
        request = Envelope.from_bytes(msg.data)
        asked.append(request.data)
        answer = {
            "number": request.data["number"],
            "kind": "invoice",
            "filename": f"{request.data['number']}.pdf",
            "media_type": "application/pdf",
            "content_base64": base64.b64encode(printed).decode(),
            "sha256": hashlib.sha256(printed).hexdigest(),
        }
        await msg.respond(Reply(ok=True, data=answer).model_dump_json().encode())

    await nc.subscribe(ShowDocument.SUBJECT, queue="subscriptions", cb=show_document)
    async with create_service(settings).running():
        for fact in facts:
            envelope = Envelope.wrap(fact)
            await js.publish(
                fact.SUBJECT, envelope.to_bytes(), headers={"Nats-Msg-Id": envelope.id}
            )
        await eventually(lambda: len(mailbox.mails()) == 4, what="four mails")
    subjects = {m.to + " " + m.subject: m for m in mailbox.mails()}
    reminder = next(m for k, m in subjects.items() if k.startswith("cat@"))
    assert reminder.subject == "Reminder: Customer service forum, Wed 3 Mar 2027, 10:00"
    assert _calendar(reminder) is not None
    invoice = next(m for m in mailbox.mails() if "Invoice INV-000007" in m.subject)
    assert "£10,800.00" in invoice.subject
    (document,) = list(invoice.message.iter_attachments())
    assert (document.get_filename(), document.get_content_type()) == (
        "INV-000007.pdf",
        "application/pdf",
    )
    assert document.get_payload(decode=True) == printed
    assert asked == [{"number": "INV-000007", "format": "pdf"}]
    paid = next(m for m in mailbox.mails() if "Payment received" in m.subject)
    assert "paid in full" in paid.text()
    overdue = next(m for m in mailbox.mails() if m.to == "accounts@wyre.example.gov.uk")
    assert overdue.subject.startswith("Final reminder: invoice INV-000008 is 60 days overdue")
