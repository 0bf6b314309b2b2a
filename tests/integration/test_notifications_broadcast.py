"""Broadcasts reach a topic's subscribers once on each channel they agreed to; bad input
is refused with nothing sent; SMS go through GOV.UK Notify, wait out quiet hours and
respect the rate limit; a forgotten contact is never written to again."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from nats.aio.client import Client

from contracts import Envelope
from contracts.notifications_v1 import (
    AddContact,
    BroadcastCompleted,
    BroadcastStatus,
    ForgetContact,
    SendBroadcast,
    ShowContact,
    Unsubscribe,
)
from kernel.commands import CommandFailed, request, request_raw
from kernel.settings import Settings
from services.notifications import domain
from services.notifications.app import create_service
from services.notifications.failures import PermanentFailure, TransientFailure
from services.notifications.sms import NotifyGateway, read_captured
from tests.conftest import Mailbox, eventually
from tests.notifications_support import (
    NOTIFY_API_KEY,
    NOTIFY_TEMPLATE_ID,
    FakeNotify,
    deliveries,
    quick,
    stream_facts,
)

ADVISORY = {
    "reference": "WARP-2026-014",
    "severity": "high",
    "title": "Phishing emails posing as council tax refunds",
    "summary": "Links lead to a fake Microsoft 365 sign-in page.",
    "action": "Block the sender domain and reset any password typed in.",
}


async def add(nc: Client, n: int, **fields: object) -> dict:
    values: dict[str, object] = {
        "email": f"officer{n}@council{n}.example.gov.uk",
        "name": f"Officer {n}",
    }
    values.update(fields)
    return await request(nc, AddContact(**values))


async def refused(nc: Client, command) -> dict:  # type: ignore[no-untyped-def]
    with pytest.raises(CommandFailed) as failure:
        await request(nc, command)
    return failure.value.error.model_dump()


async def test_broadcast_reaches_subscribers_only_and_skips_sms_without_consent(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    settings = quick(settings)
    async with create_service(settings).running() as notes:
        await add(nc, 1, mobile="07400 100001", sms_consent=True, topics=["warp"])
        await add(nc, 2, mobile="07400 100002", topics=["warp"])  # no SMS consent
        await add(nc, 3, topics=["warp"])  # no mobile at all
        await add(nc, 4, mobile="07400 100004", sms_consent=True, topics=["newsletter"])

        answer = await request(
            nc,
            SendBroadcast(
                topic="warp", channels=["email", "sms"], template="security_advisory", data=ADVISORY
            ),
        )
        assert (answer["recipients"], answer["planned"], answer["skipped_for_consent"]) == (3, 4, 2)

        completed = await eventually(
            lambda: stream_facts(nc, "NOTIFICATIONS", BroadcastCompleted.SUBJECT), what="completed"
        )
        mails = mailbox.mails()
        sms = read_captured(settings.data_dir / "sms")
        status = await request(nc, BroadcastStatus(broadcast_id=answer["broadcast_id"]))

    assert sorted(m.to for m in mails) == [
        f"officer{n}@council{n}.example.gov.uk" for n in (1, 2, 3)
    ]
    assert [s.to for s in sms] == ["+447400100001"]
    assert sms[0].text.startswith("WARP HIGH WARP-2026-014") and sms[0].encoding == "GSM-7"
    (fact,) = completed
    assert {k: fact.data[k] for k in ("sent", "failed", "skipped_for_consent", "recipients")} == {
        "sent": 4,
        "failed": 0,
        "skipped_for_consent": 2,
        "recipients": 3,
    }
    assert status["sent"] == 4 and status["completed"]
    mail = mails[0]
    link = mail.message["List-Unsubscribe"].strip("<>")
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    contact_id, topic, signature = (part.split("=")[1] for part in link.split("?")[1].split("&"))
    assert topic == "warp"
    assert domain.unsubscribe_link_is_genuine(
        settings.unsubscribe_secret, contact_id, topic, signature
    )
    assert "[WARP HIGH] WARP-2026-014" in mail.subject
    assert (await deliveries(notes))[0].broadcast_id == answer["broadcast_id"]


async def test_the_same_broadcast_command_twice_sends_once(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    settings = quick(settings)
    async with create_service(settings).running() as notes:
        await add(nc, 1, topics=["warp"])
        command = SendBroadcast(
            topic="warp", channels=["email"], template="security_advisory", data=ADVISORY
        )
        envelope = Envelope.wrap(command)
        first = await request_raw(nc, command.SUBJECT, envelope.to_bytes())
        again = await request_raw(nc, command.SUBJECT, envelope.to_bytes())  # a client retry
        assert first.data == again.data or first.data["broadcast_id"] == again.data["broadcast_id"]
        await eventually(lambda: len(mailbox.mails()) == 1)
        await asyncio.sleep(0.8)
        assert len(mailbox.mails()) == 1
        assert len(await deliveries(notes)) == 1


async def test_bad_input_is_refused_with_a_clear_error_and_nothing_sent(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    settings = quick(settings)
    async with create_service(settings).running() as notes:
        await add(nc, 1, mobile="07400 100001", sms_consent=True, topics=["warp"])

        bad_phone = await refused(nc, AddContact(email="x@example.gov.uk", mobile="0161 496 0000"))
        assert (bad_phone["code"], bad_phone["field"]) == ("invalid", "mobile")
        assert "mobile" in bad_phone["message"]
        unknown_topic = await refused(
            nc, SendBroadcast(topic="warpp", channels=["email"], template="broadcast", data={})
        )
        assert (unknown_topic["code"], unknown_topic["field"]) == ("not_found", "topics")
        unknown_template = await refused(
            nc, SendBroadcast(topic="warp", channels=["email"], template="advisory", data=ADVISORY)
        )
        assert (unknown_template["code"], unknown_template["field"]) == ("not_found", "template")
        no_sms_version = await refused(
            nc, SendBroadcast(topic="warp", channels=["sms"], template="invoice_issued", data={})
        )
        assert no_sms_version["field"] == "channels"
        missing = {k: v for k, v in ADVISORY.items() if k != "severity"}
        missing_variable = await refused(
            nc,
            SendBroadcast(
                topic="warp", channels=["email", "sms"], template="security_advisory", data=missing
            ),
        )
        assert (missing_variable["code"], missing_variable["field"]) == ("invalid", "data")
        assert "severity" in missing_variable["message"]
        too_long = await refused(
            nc,
            SendBroadcast(
                topic="warp",
                channels=["sms"],
                template="security_advisory",
                data={**ADVISORY, "title": "A very long title " * 12},
            ),
        )
        assert (too_long["code"], too_long["field"]) == ("invalid", "data")
        assert "parts; the limit is 2" in too_long["message"]
        unknown_contact = await refused(nc, ShowContact(contact="nobody@example.gov.uk"))
        assert unknown_contact["code"] == "not_found"

        await asyncio.sleep(0.5)
        assert await deliveries(notes) == []
    assert mailbox.mails() == []
    assert read_captured(settings.data_dir / "sms") == []


async def test_unsubscribed_and_withdrawn_contacts_hear_nothing(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    settings = quick(settings)
    async with create_service(settings).running():
        await add(nc, 1, mobile="07400 100001", sms_consent=True, topics=["warp"])
        await add(nc, 2, mobile="07400 100002", sms_consent=True, topics=["warp"])
        await request(nc, Unsubscribe(contact="officer1@council1.example.gov.uk", topics=["warp"]))
        await request(nc, Unsubscribe(contact="officer2@council2.example.gov.uk", channels=["sms"]))
        answer = await request(
            nc,
            SendBroadcast(
                topic="warp", channels=["email", "sms"], template="security_advisory", data=ADVISORY
            ),
        )
        assert (answer["recipients"], answer["planned"], answer["skipped_for_consent"]) == (1, 1, 1)
        await eventually(lambda: len(mailbox.mails()) == 1)
    assert mailbox.mails()[0].to == "officer2@council2.example.gov.uk"


async def test_forgotten_contact_keeps_no_address_and_gets_nothing_again(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    settings = quick(settings)
    async with create_service(settings).running() as notes:
        await add(nc, 1, mobile="07400 100001", sms_consent=True, topics=["warp"])
        await request(
            nc,
            SendBroadcast(
                topic="warp", channels=["email", "sms"], template="security_advisory", data=ADVISORY
            ),
        )
        await eventually(lambda: len(mailbox.mails()) == 1)
        await eventually(lambda: len(read_captured(settings.data_dir / "sms")) == 1)

        forgotten = await request(nc, ForgetContact(contact="officer1@council1.example.gov.uk"))
        assert forgotten["ledger_rows_scrubbed"] == 2
        rows = await deliveries(notes)
        assert all(r.recipient.startswith("forgotten:") and r.context == "{}" for r in rows)
        assert (await refused(nc, ShowContact(contact="officer1@council1.example.gov.uk")))[
            "code"
        ] == "not_found"
        answer = await request(
            nc,
            SendBroadcast(
                topic="warp", channels=["email"], template="security_advisory", data=ADVISORY
            ),
        )
        assert answer["recipients"] == 0
        await asyncio.sleep(0.5)
    assert len(mailbox.mails()) == 1


async def test_non_urgent_sms_wait_for_the_end_of_quiet_hours_and_urgent_ones_go(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    now = datetime.now(domain.LONDON)
    window = f"{now - timedelta(hours=1):%H:%M}-{now + timedelta(hours=1):%H:%M}"
    settings = quick(settings, quiet_hours=window)  # quiet now
    async with create_service(settings).running() as notes:
        await add(nc, 1, mobile="07400 100001", sms_consent=True, topics=["warp"])
        routine = await request(
            nc,
            SendBroadcast(
                topic="warp", channels=["sms"], template="security_advisory", data=ADVISORY
            ),
        )
        await request(
            nc,
            SendBroadcast(
                topic="warp",
                channels=["sms"],
                template="security_advisory",
                data=ADVISORY,
                urgent=True,
            ),
        )
        await eventually(
            lambda: len(read_captured(settings.data_dir / "sms")) == 1, what="urgent SMS"
        )
        await asyncio.sleep(0.6)
        rows = {r.urgent: r for r in await deliveries(notes)}
        status = await request(nc, BroadcastStatus(broadcast_id=routine["broadcast_id"]))
    assert len(read_captured(settings.data_dir / "sms")) == 1
    assert (rows[True].status, rows[False].status) == ("sent", "deferred")
    assert rows[False].attempts == 0
    assert status["deferred"] == 1 and not status["completed"]


async def test_sms_rate_limit_spaces_messages(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    settings = quick(settings, sms_rate_per_s=20.0)
    async with create_service(settings).running():
        for n in range(10):
            await add(nc, n, mobile=f"07400 1000{n:02d}", sms_consent=True, topics=["warp"])
        await request(
            nc,
            SendBroadcast(
                topic="warp", channels=["sms"], template="security_advisory", data=ADVISORY
            ),
        )
        await eventually(lambda: len(read_captured(settings.data_dir / "sms")) == 10)
    stamps = sorted(s.at for s in read_captured(settings.data_dir / "sms"))
    spread = (
        datetime.fromisoformat(stamps[-1]) - datetime.fromisoformat(stamps[0])
    ).total_seconds()
    assert spread >= 9 / 20 * 0.9  # ten starts at 20 a second span at least 0.45 s


# GOV.UK Notify, against a local server implementing its documented API


@pytest.fixture
async def notify() -> FakeNotify:
    fake = FakeNotify()
    await fake.start()
    yield fake
    await fake.stop()


def gateway(notify: FakeNotify, key: str = NOTIFY_API_KEY) -> NotifyGateway:
    return NotifyGateway(api_key=key, template_id=NOTIFY_TEMPLATE_ID, base_url=notify.url)


async def test_notify_gateway_sends_with_a_signed_token(notify: FakeNotify) -> None:
    sms = gateway(notify)
    try:
        provider_id = await sms.send("+447400123456", "Bins move to Tuesday", reference="d-1")
    finally:
        await sms.close()
    (received,) = notify.received
    assert len(provider_id) == 36
    assert received == {
        "phone_number": "+447400123456",
        "template_id": NOTIFY_TEMPLATE_ID,
        "personalisation": {"body": "Bins move to Tuesday"},
        "reference": "d-1",
    }


async def test_notify_gateway_errors_are_classified(notify: FakeNotify) -> None:
    sms = gateway(notify)
    wrong_key = gateway(notify, NOTIFY_API_KEY[:-4] + "0000")
    try:
        with pytest.raises(PermanentFailure, match="ValidationError"):
            await sms.send("+44123", "x", reference="d-2")
        notify.fail_next = 1
        with pytest.raises(TransientFailure, match="500"):
            await sms.send("+447400123456", "x", reference="d-3")
        with pytest.raises(TransientFailure, match="AuthError"):
            await wrong_key.send("+447400123456", "x", reference="d-4")
    finally:
        await sms.close()
        await wrong_key.close()
    unreachable = NotifyGateway(
        api_key=NOTIFY_API_KEY, template_id=NOTIFY_TEMPLATE_ID, base_url="http://127.0.0.1:1"
    )
    with pytest.raises(TransientFailure, match="unreachable"):
        await unreachable.send("+447400123456", "x", reference="d-5")
    await unreachable.close()
    assert notify.received == []


async def test_booking_sms_through_notify_retries_a_5xx_and_records_its_id(
    settings: Settings, nc: Client, mailbox: Mailbox, notify: FakeNotify
) -> None:
    settings = quick(
        settings,
        sms_provider="notify",
        notify_api_key=NOTIFY_API_KEY,
        notify_sms_template_id=NOTIFY_TEMPLATE_ID,
        notify_base_url=notify.url,
    )
    notify.fail_next = 1
    async with create_service(settings).running() as notes:
        await add(nc, 1, mobile="07400 100001", sms_consent=True, topics=["warp"])
        await request(
            nc,
            SendBroadcast(
                topic="warp", channels=["sms"], template="security_advisory", data=ADVISORY
            ),
        )
        await eventually(lambda: len(notify.received) == 1, what="SMS at Notify")
        await eventually(lambda: _sent(notes), what="row sent")
        (row,) = await deliveries(notes)
    assert (row.status, row.attempts, row.segments) == ("sent", 2, 1)
    assert row.provider_id and len(row.provider_id) == 36
    assert notify.received[0]["personalisation"]["body"].startswith("WARP HIGH")


async def _sent(service) -> bool:  # type: ignore[no-untyped-def]
    return all(r.status == "sent" for r in await deliveries(service))


async def test_forgetting_the_last_waiting_recipient_completes_the_broadcast(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    now = datetime.now(domain.LONDON)
    window = f"{now - timedelta(hours=1):%H:%M}-{now + timedelta(hours=1):%H:%M}"
    settings = quick(settings, quiet_hours=window)
    async with create_service(settings).running() as notes:
        await add(nc, 1, mobile="07400 100001", sms_consent=True, topics=["warp"])
        await request(
            nc,
            SendBroadcast(
                topic="warp", channels=["sms"], template="security_advisory", data=ADVISORY
            ),
        )
        await eventually(
            lambda: _statuses(notes, {"deferred"}), what="the SMS waits for quiet hours to end"
        )
        await request(nc, ForgetContact(contact="officer1@council1.example.gov.uk"))
        (fact,) = await eventually(
            lambda: stream_facts(nc, "NOTIFICATIONS", BroadcastCompleted.SUBJECT), what="completed"
        )
    assert (fact.data["sent"], fact.data["failed"]) == (0, 1)
    assert read_captured(settings.data_dir / "sms") == []


async def _statuses(service, expected: set[str]) -> bool:  # type: ignore[no-untyped-def]
    rows = await deliveries(service)
    return bool(rows) and {r.status for r in rows} == expected
