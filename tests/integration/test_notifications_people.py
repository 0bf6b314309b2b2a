"""A person's rights in the notifications service: forgotten on request (contact,
consents, topics, what facts taught the directory, and the addresses and contents of
their messages), never written to or learnt again, and told everything held on them."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from nats.aio.client import Client
from sqlalchemy import MetaData, select

from contracts.events_v1 import Booker, CalendarEntry, ReminderDue
from contracts.notifications_v1 import (
    AddContact,
    BroadcastCompleted,
    ForgetContact,
    SendBroadcast,
    ShowContact,
)
from contracts.people_v1 import (
    ExportPersonFromNotifications,
    PersonErasedFromNotifications,
    PersonErasureRequested,
)
from contracts.personal import ERASED_EMAIL, ERASED_NAME, erased_email
from contracts.subscriptions_v1 import MembershipStarted
from contracts.system_v1 import RebuildRequest
from kernel.commands import CommandFailed, request
from kernel.runtime import Service
from kernel.settings import Settings
from services.notifications import domain, store
from services.notifications.app import create_service
from services.notifications.sms import read_captured
from tests.conftest import Mailbox, eventually
from tests.notifications_support import deliveries, quick, stream_facts
from tests.stack import caught_up, publish_fact, table_rows

NAME = "Ann Ahmed"
EMAIL = "ann.ahmed@bury.example.gov.uk"
PHONE = "07400 100001"
E164 = "+447400100001"
TRACES = ("Ann Ahmed", "ahmed", E164, "7400 100001", "7400100001")
BEN = "ben.bell@wigan.example.gov.uk"

CALENDAR = CalendarEntry(
    uid="evt-1@vestry",
    sequence=0,
    summary="Customer service forum",
    description="",
    starts_at=datetime(2027, 3, 3, 10, tzinfo=UTC),
    ends_at=datetime(2027, 3, 3, 12, tzinfo=UTC),
    location="Preston Guild Hall",
    status="CONFIRMED",
)
ADVISORY = {
    "reference": "WARP-2026-014",
    "severity": "high",
    "title": "Phishing emails posing as council tax refunds",
    "summary": "Links lead to a fake Microsoft 365 sign-in page.",
    "action": "Block the sender domain and reset any password typed in.",
}


@pytest.fixture
def store_services() -> tuple[str, ...]:
    return ("notifications",)


def quiet_now(settings: Settings) -> Settings:
    """Quick settings in quiet hours: email goes, non-urgent SMS wait (and stay open)."""
    now = datetime.now(domain.LONDON)
    window = f"{now - timedelta(hours=1):%H:%M}-{now + timedelta(hours=1):%H:%M}"
    return quick(settings, quiet_hours=window)


def reminder(booker: Booker, booking: str) -> ReminderDue:
    return ReminderDue(
        booking_id=booking,
        reference=f"BK-{booking}",
        event_id="e-1",
        event_title="Customer service forum",
        booker=booker,
        channel="web",
        reminder_id=f"r-{booking}-{uuid.uuid4().hex[:6]}",
        due_at=datetime(2027, 3, 2, 10, tzinfo=UTC),
        hours_before=24,
        calendar=CALENDAR,
    )


def ann_booked(**overrides: Any) -> Booker:
    fields: dict[str, Any] = {"name": NAME, "email": EMAIL, "phone": E164, "sms": True}
    return Booker(**(fields | overrides))


def ann_joined() -> MembershipStarted:
    """Ann is the billing contact of a member; the fact gives her address in its own case."""
    return MembershipStarted(
        membership_id="ms-bury",
        member_id="m-bury",
        member_name="Bury Council",
        tier="district",
        billing_email="Ann.Ahmed@bury.example.gov.uk",
        starts_on=date(2026, 4, 1),
    )


async def everywhere(nc: Client, service: Service, mailbox: Mailbox) -> dict[str, Any]:
    """Ann in every place this service keeps people: her own contact with a mobile, SMS
    consent and a topic; the directory, from a membership and a booking; a reminder and a
    welcome by email, a reminder SMS, and a broadcast by email and SMS. Her two SMS wait
    out quiet hours. Ben follows the topic and has a reminder too.

    Answers the broadcast command's answer."""
    await request(
        nc,
        AddContact(email=EMAIL, name=NAME, mobile=PHONE, sms_consent=True, topics=["warp"]),
    )
    await request(nc, AddContact(email=BEN, name="Ben Bell", topics=["warp"]))
    await publish_fact(nc, ann_joined())
    await publish_fact(nc, reminder(ann_booked(), "b-ann"))
    await publish_fact(nc, reminder(Booker(name="Ben Bell", email=BEN), "b-ben"))
    await eventually(lambda: caught_up(nc, service), what="every fact handled")
    sent = await request(
        nc,
        SendBroadcast(
            topic="warp", channels=["email", "sms"], template="security_advisory", data=ADVISORY
        ),
    )
    await eventually(lambda: len(mailbox.mails()) == 5, what="Ann's 3 emails and Ben's 2")
    # The ledger says sent a moment after the mail server has the message.
    await eventually(lambda: _statuses(service, EMAIL, {"sent"}), what="Ann's mail recorded")
    await eventually(lambda: _statuses(service, BEN, {"sent"}), what="Ben's mail recorded")
    await eventually(lambda: _statuses(service, E164, {"deferred"}), what="Ann's SMS wait")
    return sent


async def _statuses(service: Service, recipient: str, expected: set[str]) -> bool:
    rows = [r for r in await deliveries(service) if r.recipient.lower() == recipient]
    return bool(rows) and {r.status for r in rows} == expected


async def erase(nc: Client, email: str = EMAIL, phone: str | None = None) -> dict[str, Any]:
    """Ask for a person to be erased, as the operator's CLI does; notifications' answer."""
    erasure_id = str(uuid.uuid4())
    await publish_fact(nc, PersonErasureRequested(erasure_id=erasure_id, email=email, phone=phone))

    async def answer() -> dict[str, Any] | None:
        for fact in await stream_facts(nc, "NOTIFICATIONS", PersonErasedFromNotifications.SUBJECT):
            if fact.data["erasure_id"] == erasure_id:
                return fact.data
        return None

    return await eventually(answer, what=f"notifications answers erasure {erasure_id}")


async def traces_in_store(service: Service, traces: tuple[str, ...] = TRACES) -> list[str]:
    """Every value in any table of the store, text or bytes, that names the person."""
    metadata = MetaData()
    found = []
    async with service.engine.connect() as connection:
        await connection.run_sync(metadata.reflect)
        for table in metadata.sorted_tables:
            for row in await connection.execute(select(table)):
                for column, value in row._mapping.items():
                    if isinstance(value, bytes | memoryview):
                        value = bytes(value).decode(errors="replace")
                    if isinstance(value, str) and any(t.lower() in value.lower() for t in traces):
                        found.append(f"{table.name}.{column}: {value[:200]}")
    return found


async def learnt_emails(service: Service) -> list[str]:
    return [row[0] for row in await table_rows(service, store.DirectoryEntry.__table__)]


async def test_an_erased_person_is_named_by_no_row_and_their_waiting_sms_never_go(
    store_settings: Settings, nc: Client, mailbox: Mailbox, streams: None
) -> None:
    settings = quiet_now(store_settings)
    async with create_service(settings).running() as service:
        broadcast = await everywhere(nc, service, mailbox)
        rows_before = len(await deliveries(service))
        bens_before = await request(nc, ShowContact(contact=BEN))
        assert await traces_in_store(service)  # the search finds her while she is there

        answer = await erase(nc, EMAIL.title(), phone=PHONE)

        assert answer["erased"] == {"contacts": 1, "deliveries": 5}
        assert answer["kept"] == {}
        assert await traces_in_store(service) == []
        rows = await deliveries(service)
        assert len(rows) == rows_before  # kept, so nothing is sent twice
        forgotten = [r for r in rows if domain.is_forgotten_recipient(r.recipient)]
        assert sorted((r.channel, r.status) for r in forgotten) == [
            ("email", "sent"),
            ("email", "sent"),
            ("email", "sent"),
            ("sms", "failed"),
            ("sms", "failed"),
        ]
        assert all(r.context == "{}" and r.contact_id is None for r in forgotten)
        assert {r.last_error for r in forgotten if r.channel == "sms"} == {domain.NEVER_SENT}
        with pytest.raises(CommandFailed) as unknown:
            await request(nc, ShowContact(contact=EMAIL))
        assert unknown.value.error.code == "not_found"
        assert await request(nc, ShowContact(contact=BEN)) == bens_before
        assert await learnt_emails(service) == [BEN]
        # Her SMS was the broadcast's last open row: the broadcast is complete.
        (completed,) = await eventually(
            lambda: stream_facts(nc, "NOTIFICATIONS", BroadcastCompleted.SUBJECT)
        )
        assert completed.data["broadcast_id"] == broadcast["broadcast_id"]
        assert (completed.data["sent"], completed.data["failed"]) == (2, 1)
        await asyncio.sleep(0.5)
    assert read_captured(settings.data_dir / "sms") == []
    assert len(mailbox.mails()) == 5


async def test_a_second_request_or_one_for_an_erased_stand_in_erases_nothing_but_is_answered(
    store_settings: Settings, nc: Client, mailbox: Mailbox, streams: None
) -> None:
    settings = quiet_now(store_settings)
    async with create_service(settings).running() as service:
        await everywhere(nc, service, mailbox)
        first = await erase(nc, EMAIL, phone=E164)
        ledger = await table_rows(service, store.Delivery.__table__)
        bens = await request(nc, ShowContact(contact=BEN))

        again = await erase(nc, EMAIL, phone=E164)
        stand_in = await erase(nc, ERASED_EMAIL)
        other_stand_in = await erase(nc, erased_email("b-ann"))

        assert first["erased"] == {"contacts": 1, "deliveries": 5}
        assert again["erased"] == stand_in["erased"] == other_stand_in["erased"] == {}
        assert await table_rows(service, store.Delivery.__table__) == ledger
        assert await request(nc, ShowContact(contact=BEN)) == bens


async def test_facts_about_an_erased_person_replayed_or_rebuilt_send_nothing_and_teach_nothing(
    store_settings: Settings, nc: Client, mailbox: Mailbox, streams: None
) -> None:
    settings = quiet_now(store_settings)
    async with create_service(settings).running() as service:
        await everywhere(nc, service, mailbox)
        await erase(nc, EMAIL, phone=PHONE)
        ledger = await table_rows(service, store.Delivery.__table__)

        # A fact naming her that comes after the erasure, still readable (her key is
        # deleted only once every service has answered); then the same fact as every
        # service reads it once her key is gone: the stand-ins, and no phone.
        await publish_fact(nc, reminder(ann_booked(email=EMAIL.upper()), "b-late"))
        await publish_fact(nc, ann_joined())
        await publish_fact(
            nc,
            reminder(Booker(name=ERASED_NAME, email=ERASED_EMAIL, phone=None, sms=True), "b-x"),
        )
        await publish_fact(nc, reminder(ann_booked(email=erased_email("b-y")), "b-y"))
        await eventually(lambda: caught_up(nc, service), what="every fact handled")
        assert await table_rows(service, store.Delivery.__table__) == ledger
        assert await learnt_emails(service) == [BEN]

        report = await service.rebuild(RebuildRequest())
        await asyncio.sleep(0.5)  # time for anything wrongly planned to be sent

        assert {r.stream: r.failed for r in report.replayed} == {"EVENTS": 0, "SUBSCRIPTIONS": 0}
        assert await learnt_emails(service) == [BEN]
        assert await table_rows(service, store.Delivery.__table__) == ledger
        assert await traces_in_store(service) == []
    assert len(mailbox.mails()) == 5
    assert read_captured(settings.data_dir / "sms") == []


async def test_the_export_gives_her_contact_what_facts_said_and_every_message_to_her(
    store_settings: Settings, nc: Client, mailbox: Mailbox, streams: None
) -> None:
    settings = quiet_now(store_settings)
    async with create_service(settings).running() as service:
        broadcast = await everywhere(nc, service, mailbox)

        by_email = await request(nc, ExportPersonFromNotifications(email=EMAIL.upper()))
        nobody = await request(nc, ExportPersonFromNotifications(email="nobody@nowhere.example"))
        await erase(nc, EMAIL, phone=PHONE)
        after = await request(nc, ExportPersonFromNotifications(email=EMAIL, phone=PHONE))

    assert by_email["service"] == "notifications"
    records = by_email["records"]
    assert set(records) == {"contacts", "directory", "deliveries"}
    (contact,) = records["contacts"]
    assert contact == {
        "contact_id": contact["contact_id"],
        "email": EMAIL,
        "name": NAME,
        "organisation": None,
        "mobile": E164,
        "email_consent": True,
        "sms_consent": True,
        "topics": ["warp"],
        "source": "cli",
        "added_at": contact["added_at"],
    }
    assert datetime.fromisoformat(contact["added_at"]).date() == date.today()
    (learnt,) = records["directory"]
    assert learnt["contact_id"] == contact["contact_id"]
    assert (learnt["name"], learnt["mobile"], learnt["organisation"]) == (
        NAME,
        E164,
        "Bury Council",
    )
    assert learnt["learnt_from"] == ["booking", "membership"]
    assert learnt["first_seen"] is not None and learnt["sms_opt_in"] is True
    messages = {(d["template"], d["channel"]): d for d in records["deliveries"]}
    assert set(messages) == {
        ("welcome", "email"),
        ("reminder", "email"),
        ("reminder", "sms"),
        ("security_advisory", "email"),
        ("security_advisory", "sms"),
    }
    welcome = messages[("welcome", "email")]
    assert welcome["recipient"] == "Ann.Ahmed@bury.example.gov.uk"  # as the fact gave it
    assert (welcome["status"], welcome["attempts"]) == ("sent", 1)
    assert welcome["sent_at"] >= welcome["created_at"]
    assert welcome["context"]["member_name"] == "Bury Council"
    assert messages[("reminder", "email")]["context"]["name"] == NAME
    assert (
        messages[("reminder", "sms")]["recipient"],
        messages[("reminder", "sms")]["status"],
    ) == (
        E164,
        "deferred",
    )
    advisory = messages[("security_advisory", "email")]
    assert advisory["broadcast_id"] == broadcast["broadcast_id"]
    assert advisory["context"]["recipient_name"] == NAME  # hers; the advisory is everyone's
    assert all(BEN not in str(d) for d in records["deliveries"])
    assert nobody == {"service": "notifications", "records": {}}
    assert after == {"service": "notifications", "records": {}}


async def test_a_record_with_her_phone_is_hers_and_her_mobile_leaves_a_shared_one(
    store_settings: Settings, nc: Client, mailbox: Mailbox, streams: None
) -> None:
    """The request's phone names her records under another address (as it names her
    bookings in events); a mobile of hers on a colleague's record is taken off it."""
    settings = quick(store_settings)
    async with create_service(settings).running() as service:
        await request(nc, AddContact(email=EMAIL, name=NAME, topics=["warp"]))
        home = ann_booked(name="A. Ahmed", email="ann@home.example", phone=E164, sms=False)
        await publish_fact(nc, reminder(home, "b-home"))
        duty = "duty@bury.example.gov.uk"
        await request(nc, AddContact(email=duty, name="Duty desk", mobile="07400 100002"))
        await request(nc, AddContact(email=BEN, name="Ben Bell", mobile="07400 100002"))
        await eventually(lambda: len(mailbox.mails()) == 1, what="the reminder at home")

        answer = await erase(nc, EMAIL, phone=PHONE)
        # The duty mobile was on Ben's record too; erasing Ben takes it off the desk's.
        bens = await erase(nc, BEN)

        assert answer["erased"] == {"contacts": 2, "deliveries": 1}
        assert await traces_in_store(service, (*TRACES, "ann@home")) == []
        assert bens["erased"] == {"contacts": 1}
        desk = await request(nc, ShowContact(contact=duty))
        assert (desk["name"], desk["mobile"], desk["sms_consent"]) == ("Duty desk", None, False)


async def test_forgetting_a_contact_keeps_only_a_keyed_digest_of_each_address(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    async with create_service(quick(settings)).running() as service:
        await request(nc, AddContact(email=EMAIL, name=NAME, mobile=PHONE, topics=["warp"]))
        forgotten = await request(nc, ForgetContact(contact=EMAIL))
        digests = [row[0] for row in await table_rows(service, store.Forgotten.__table__)]
        answer = await erase(nc, EMAIL)

    assert forgotten["forgotten"] is True
    plain = {hashlib.sha256(address.encode()).hexdigest() for address in (EMAIL, E164)}
    assert len(digests) == 2 and not plain & set(digests)
    assert set(digests) == {store.forgotten_digest(EMAIL), store.forgotten_digest(E164)}
    assert answer["erased"] == {}  # the same forgetting: nothing left for a request
