"""Bookings reach people once, by email with a calendar entry and by SMS where they
agreed; a mail server that defers or refuses is met with retries or a failure fact."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from icalendar import Calendar
from nats.aio.client import Client

from contracts.events_v1 import BookingConfirmed, BookPlace
from contracts.notifications_v1 import DeliveryFailed, DeliverySent, ResendDelivery
from contracts.system_v1 import ReplayRequest
from kernel.commands import CommandFailed, request
from kernel.runtime import Service
from kernel.settings import Settings
from services.notifications import domain, store
from services.notifications.app import create_service
from services.notifications.sms import read_captured
from tests.conftest import Mailbox, eventually
from tests.events_support import Clock, events_service, published_event
from tests.notifications_support import deliveries, quick, scripted_smtp, stream_facts
from tests.stack import membership_started
from vestry.mailcapture import read_mailbox


def booking(event_id: str, n: int, **fields: object) -> BookPlace:
    return BookPlace(
        event_id=event_id, name=f"Booker {n}", email=f"booker{n}@council.example.gov.uk", **fields
    )


async def test_a_confirmed_booking_sends_one_email_with_an_ics_and_one_sms_where_consented(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    settings = quick(settings)
    async with events_service(settings, Clock()), create_service(settings).running() as notes:
        event_id = await published_event(nc)
        await request(nc, booking(event_id, 1, phone="07400 123456", sms=True))
        await request(nc, booking(event_id, 2, phone="07400 654321"))  # no SMS consent

        await eventually(lambda: len(mailbox.mails()) == 2, what="two confirmations")
        sms_dir = settings.data_dir / "sms"
        await eventually(lambda: len(read_captured(sms_dir)) == 1, what="one SMS")

        mail = next(m for m in mailbox.mails() if m.to == "booker1@council.example.gov.uk")
        assert mail.subject.startswith("Booked: Lean reviews in local government")
        (ics,) = [
            part
            for part in mail.message.iter_attachments()
            if part.get_content_type() == "text/calendar"
        ]
        calendar = Calendar.from_ical(ics.get_payload(decode=True))
        (event,) = calendar.walk("VEVENT")
        assert str(event["SUMMARY"]) == "Lean reviews in local government"
        assert str(calendar["METHOD"]) == "REQUEST"
        assert event.decoded("DTSTART").isoformat() == "2027-02-10T10:00:00+00:00"
        assert "10:00" in mail.text()  # London time, GMT in February

        (sms,) = read_captured(sms_dir)
        assert sms.to == "+447400123456"
        assert "Lean reviews in local government" in sms.text
        assert sms.segments <= 2

        # The mail server and the SMS sink have the messages a moment before the ledger
        # records them as sent.
        async def all_sent() -> list[store.Delivery] | None:
            rows = await deliveries(notes)
            statuses = sorted((r.channel, r.status) for r in rows)
            return (
                rows
                if statuses == [("email", "sent"), ("email", "sent"), ("sms", "sent")]
                else None
            )

        rows = await eventually(all_sent, what="three deliveries recorded as sent")
        (sms_row,) = [r for r in rows if r.channel == "sms"]
        assert sms_row.provider_id == sms.id and sms_row.segments == sms.segments


async def test_the_same_booking_fact_three_times_and_replayed_sends_one_email(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    settings = quick(settings)
    async with events_service(settings, Clock()), create_service(settings).running() as notes:
        event_id = await published_event(nc)
        await request(nc, booking(event_id, 1, phone="07400 123456", sms=True))
        await eventually(lambda: len(mailbox.mails()) == 1, what="confirmation")

        js = nc.jetstream()
        (confirmed,) = await stream_facts(nc, "EVENTS", BookingConfirmed.SUBJECT)
        for copy in ("copy-1", "copy-2"):  # as a redelivery past the dedupe window would come
            await js.publish(
                BookingConfirmed.SUBJECT, confirmed.to_bytes(), headers={"Nats-Msg-Id": copy}
            )
        await eventually(lambda: sum(c.stats.skipped for c in notes.consumers) >= 2, what="skipped")
        report = await notes.replay(ReplayRequest(stream="EVENTS"))
        assert report.applied == 0 and report.skipped >= 3

        await notes_settle(notes)
        assert len(mailbox.mails()) == 1
        assert len(read_captured(settings.data_dir / "sms")) == 1
        assert len(await deliveries(notes)) == 2


async def notes_settle(service: Service, seconds: float = 1.0) -> None:
    """Give a wrongly planned delivery time to go out (the sender polls every 0.3 s)."""
    await asyncio.sleep(seconds)
    rows = await deliveries(service)
    assert all(r.status in ("sent", "failed") for r in rows), [(r.channel, r.status) for r in rows]


async def _plan_welcome(service: Service, n: int = 1) -> None:
    async with service.sessions() as session, session.begin():
        await store.plan_delivery(session, f"cause-{n}", domain.welcome(membership_started(n)))


async def test_a_server_that_answers_451_twice_gets_the_mail_on_the_third_attempt(
    settings: Settings, nc: Client, tmp_path: Path
) -> None:
    async with scripted_smtp(tmp_path / "flaky", ["451 4.7.1 Greylisted, try later"] * 2) as (
        port,
        smtp,
    ):
        service = create_service(quick(settings, smtp_port=port))
        async with service.running():
            await _plan_welcome(service)
            await eventually(lambda: len(read_mailbox(tmp_path / "flaky")) == 1, what="mail")
            await eventually(lambda: _sent_fact(nc, DeliverySent.SUBJECT), what="sent fact")
            (row,) = await deliveries(service)
    assert (row.status, row.attempts) == ("sent", 3)
    assert smtp.rcpt_seen == 3
    (fact,) = await stream_facts(nc, "NOTIFICATIONS", DeliverySent.SUBJECT)
    assert fact.data["attempts"] == 3


async def test_a_server_that_answers_550_fails_the_delivery_at_once_with_a_fact(
    settings: Settings, nc: Client, tmp_path: Path
) -> None:
    async with scripted_smtp(tmp_path / "refusing", ["550 5.1.1 No such mailbox"] * 5) as (
        port,
        smtp,
    ):
        service = create_service(quick(settings, smtp_port=port))
        async with service.running():
            await _plan_welcome(service)
            await eventually(lambda: _sent_fact(nc, DeliveryFailed.SUBJECT), what="failed fact")
            await notes_settle(service, 0.8)  # room for a wrong retry (delays are 0.1 s)
            (row,) = await deliveries(service)
    assert (row.status, row.attempts) == ("failed", 1)
    assert "550" in (row.last_error or "")
    assert smtp.rcpt_seen == 1
    assert read_mailbox(tmp_path / "refusing") == []
    (fact,) = await stream_facts(nc, "NOTIFICATIONS", DeliveryFailed.SUBJECT)
    assert fact.data["delivery_id"] == row.id and "No such mailbox" in fact.data["error"]


async def test_transient_failures_give_up_after_the_configured_retries(
    settings: Settings, nc: Client, tmp_path: Path
) -> None:
    async with scripted_smtp(tmp_path / "busy", ["421 4.3.2 Busy"] * 10) as (port, smtp):
        service = create_service(quick(settings, smtp_port=port, delivery_retry_s=[0.05, 0.05]))
        async with service.running():
            await _plan_welcome(service)
            await eventually(lambda: _sent_fact(nc, DeliveryFailed.SUBJECT), what="given up")
            (row,) = await deliveries(service)
    assert (row.status, row.attempts) == ("failed", 3)
    assert smtp.rcpt_seen == 3


async def _sent_fact(nc: Client, subject: str) -> bool:
    return bool(await stream_facts(nc, "NOTIFICATIONS", subject))


async def test_an_operator_resends_a_failed_delivery_once_the_mailbox_exists(
    settings: Settings, nc: Client, tmp_path: Path
) -> None:
    async with scripted_smtp(tmp_path / "fixed", ["550 5.1.1 No such mailbox"]) as (port, _):
        service = create_service(quick(settings, smtp_port=port))
        async with service.running():
            await _plan_welcome(service)
            await eventually(lambda: _sent_fact(nc, DeliveryFailed.SUBJECT), what="failed")
            (row,) = await deliveries(service)
            with pytest.raises(CommandFailed) as not_found:
                await request(nc, ResendDelivery(delivery_id="no-such-row"))
            assert not_found.value.error.code == "not_found"
            answer = await request(nc, ResendDelivery(delivery_id=row.id))
            assert answer["status"] == "pending"
            await eventually(lambda: _sent_fact(nc, DeliverySent.SUBJECT), what="sent")
            with pytest.raises(CommandFailed) as again:
                await request(nc, ResendDelivery(delivery_id=row.id))
            assert again.value.error.code == "conflict"
            (row,) = await deliveries(service)
    assert (row.status, row.attempts) == ("sent", 2)
    assert len(read_mailbox(tmp_path / "fixed")) == 1
    assert len(await stream_facts(nc, "NOTIFICATIONS")) == 2  # failed, then sent
