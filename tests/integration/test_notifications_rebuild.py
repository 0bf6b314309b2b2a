"""`vestry rebuild notifications` drops the directory learnt from facts and replays
EVENTS and SUBSCRIPTIONS: the directory comes back row for row, while people's own
choices (consents, topics, contacts added by hand, being forgotten) stay as they were
and nobody hears anything twice."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from nats.aio.client import Client
from sqlalchemy import delete, update

from contracts.envelope import derived_message_id
from contracts.events_v1 import BookPlace, CancelBooking, UpdateEvent
from contracts.notifications_v1 import AddContact, ForgetContact, ShowContact, Unsubscribe
from contracts.system_v1 import RebuildRequest
from kernel.commands import request
from kernel.runtime import Service
from kernel.settings import Settings
from services.notifications import store
from services.notifications.app import create_service
from services.notifications.directory import contact_id_for
from services.notifications.sms import read_captured
from tests.conftest import Mailbox, eventually
from tests.events_support import EVENT_DAY, Clock, events_service, published_event
from tests.notifications_support import deliveries, quick
from tests.stack import (
    caught_up,
    delivery_count,
    membership_started,
    publish_fact,
    table_rows,
)

OWN_CHOICES = (store.Contact.__table__, store.ContactTopic.__table__, store.Forgotten.__table__)


async def learnt(service: Service) -> int:
    return len(await table_rows(service, store.DirectoryEntry.__table__))


def booking(event_id: str, number: int, **overrides: Any) -> BookPlace:
    fields: dict[str, Any] = {
        "event_id": event_id,
        "name": f"Officer {number}",
        "email": f"f{number}@example.gov.uk",  # the billing contact of Council {number} too
        "organisation_name": f"Council {number} (events team)",
    }
    return BookPlace(**(fields | overrides))


async def test_rebuild_gives_back_the_directory_live_traffic_built_and_keeps_choices(
    settings: Settings, nc: Client, mailbox: Mailbox, streams: None
) -> None:
    settings = quick(settings)
    notifications = create_service(settings)
    async with events_service(settings, Clock()) as (events,), notifications.running():
        # Members join (SUBSCRIPTIONS), then their people book (EVENTS), interleaved
        # live; a rebuild reads one stream after the other.
        for number in range(6):
            await publish_fact(nc, membership_started(number))
        event_id = await published_event(nc, capacity=3)
        references = []
        for number in range(5):
            # Officer 2 gives no mobile (a landline is refused at booking): no SMS.
            phone = {"phone": "07400 111222", "sms": True} if number == 1 else {}
            answer = await request(nc, booking(event_id, number, **phone))
            references.append(answer["reference"])
        await request(nc, CancelBooking(reference=references[0]))  # promotes Officer 3
        await request(
            nc,
            UpdateEvent(
                event_id=event_id,
                starts_at=EVENT_DAY + timedelta(days=2),
                ends_at=EVENT_DAY + timedelta(days=2, hours=3),
            ),
        )
        await publish_fact(nc, membership_started(7))  # a later fact about a new member
        # People's own choices: one added by hand, one who stops SMS, one forgotten.
        await request(
            nc,
            AddContact(email="duty@gm.example.gov.uk", name="Duty officer", topics=["warp"]),
        )
        await request(nc, Unsubscribe(contact="f1@example.gov.uk", topics=[], channels=["sms"]))
        await eventually(lambda: _learnt_is(notifications, 7), what="directory of 7 people")
        await request(nc, ForgetContact(contact="f5@example.gov.uk"))
        await eventually(lambda: caught_up(nc, notifications, events), what="every fact handled")
        await eventually(lambda: _quiet(notifications), what="every delivery settled")

        live = await table_rows(notifications, store.DirectoryEntry.__table__)
        choices = [await table_rows(notifications, table) for table in OWN_CHOICES]
        ledger, mails = await delivery_count(notifications), len(mailbox.mails())
        sms = len(read_captured(settings.data_dir / "sms"))
        shown = await request(nc, ShowContact(contact="f2@example.gov.uk"))

        async with notifications.sessions() as session, session.begin():  # a bug damages it
            await session.execute(
                delete(store.DirectoryEntry).where(store.DirectoryEntry.email < "f3")
            )
            await session.execute(update(store.DirectoryEntry).values(organisation="Wrong"))

        report = await notifications.rebuild(RebuildRequest())
        await asyncio.sleep(1)  # time for anything wrongly planned to be sent

        assert await table_rows(notifications, store.DirectoryEntry.__table__) == live
        assert [await table_rows(notifications, table) for table in OWN_CHOICES] == choices
        assert await delivery_count(notifications) == ledger
        assert len(mailbox.mails()) == mails
        assert len(read_captured(settings.data_dir / "sms")) == sms
        assert await request(nc, ShowContact(contact="f2@example.gov.uk")) == shown
        assert report.rows_before == {"directory": 3} and report.rows_after == {"directory": 6}
        assert {r.stream: r.failed for r in report.replayed} == {"EVENTS": 0, "SUBSCRIPTIONS": 0}

        await publish_fact(nc, membership_started(8))  # live learning resumed
        await eventually(lambda: _learnt_is(notifications, 7), what="member 8 learnt")

    by_email = {row[0]: row for row in live}
    assert "f5@example.gov.uk" not in by_email  # forgotten, and not learnt back
    # Everyone keeps their id through the rebuild: keyed, not computable from the address.
    for email, row in by_email.items():
        assert row[1] == contact_id_for(email) != derived_message_id("contact", email)
    assert "duty@gm.example.gov.uk" not in by_email  # added by hand: a choice, not a fact
    # The latest fact decides each field, whichever stream it came on.
    assert [by_email[f"f{n}@example.gov.uk"][5] for n in (0, 4, 7)] == [
        "Council 0 (events team)",
        "Council 4 (events team)",
        "Council 7",
    ]
    assert shown["mobile"] is None and shown["sms_consent"] is False  # no mobile given


async def test_choices_override_what_facts_said_and_an_opt_in_needs_a_mobile(
    settings: Settings, nc: Client, mailbox: Mailbox, streams: None
) -> None:
    settings = quick(settings)
    notifications = create_service(settings)
    async with events_service(settings, Clock()) as (events,), notifications.running():
        event_id = await published_event(nc, capacity=5)
        await request(nc, booking(event_id, 1, phone="07400 111222", sms=True))
        await request(nc, booking(event_id, 2, phone="07400 333444"))
        await eventually(
            lambda: len(read_captured(settings.data_dir / "sms")) == 1, what="SMS to the opted-in"
        )
        await eventually(lambda: caught_up(nc, notifications, events), what="both bookings learnt")
        opted_in = await request(nc, ShowContact(contact="f1@example.gov.uk"))
        assert (opted_in["sms_consent"], opted_in["source"], opted_in["topics"]) == (
            True,
            "facts",
            [],
        )
        assert opted_in["learnt_from"] == ["booking"]
        assert (await request(nc, ShowContact(contact="f2@example.gov.uk")))["sms_consent"] is False

        stopped = await request(
            nc, Unsubscribe(contact=opted_in["contact_id"], topics=[], channels=["sms"])
        )
        assert stopped["sms_consent"] is False and stopped["contact_id"] == opted_in["contact_id"]
        another = await published_event(nc, capacity=5, title="Lean reviews, part two")
        await request(nc, booking(another, 1, sms=True, phone="07400 111222"))
        await eventually(lambda: len(mailbox.mails()) == 3, what="the second booking's email")
        await eventually(lambda: caught_up(nc, notifications, events), what="every fact handled")
        planned = [d.channel for d in await deliveries(notifications)]
        assert sorted(planned) == ["email", "email", "email", "sms"]  # their choice stands


async def _learnt_is(service: Service, expected: int) -> bool:
    return await learnt(service) == expected


async def _quiet(service: Service) -> bool:
    async with service.sessions() as session:
        return await store.owed_now(session) == 0
