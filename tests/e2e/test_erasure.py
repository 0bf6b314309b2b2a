"""A person is forgotten across Vestry (UK GDPR Article 17), and what they could ask to
see beforehand (Article 15) lists every place their data was.

Jo Bloggs is the billing contact of a member, booked two events (one of them paid,
invoiced to the member), received email and SMS, and follows the WARP advisories.
After `vestry people forget`, no file of any service's store and no JetStream file
holds their name, email or phone; the member's invoices remain, their totals as
they were; and replaying every stream into every service, then rebuilding every
read model, brings none of it back and sends nobody anything.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from sqlalchemy import select

from contracts.events_v1 import BookPlace
from contracts.money import Money
from contracts.notifications_v1 import AddContact, SendBroadcast
from contracts.subscriptions_v1 import JoinMember, ListInvoices
from contracts.system_v1 import RebuildRequest, ReplayRequest
from kernel.commands import request
from kernel.runtime import Service
from kernel.settings import Settings
from services.notifications.sms import read_captured
from services.notifications.store import DirectoryEntry
from tests.conftest import Mailbox, eventually
from tests.events_support import published_event
from tests.stack import stack
from tests.subscriptions_helpers import run_to_end
from vestry.cli_people import erase, export
from vestry.natsserver import NatsServer

NAME = "Jo Bloggs"
EMAIL = "Jo.Bloggs@wigan.example.gov.uk"
PHONE = "+447911123456"
# Searched case-insensitively, as bytes, in every file.
TRACES = (b"bloggs", b"jo.bloggs@wigan", b"7911123456", b"7911 123456")


def files_holding_traces(*roots: Path, skip: tuple[Path, ...] = ()) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if not path.is_file() or any(path.is_relative_to(s) for s in skip):
                continue
            content = path.read_bytes().lower()
            hits = [trace.decode() for trace in TRACES if trace in content]
            if hits:
                found[str(path.relative_to(root.parent))] = hits
    return found


async def quiet(services: tuple[Service, ...]) -> None:
    """Wait until the whole pipeline is still: every fact published and applied, no mail
    or SMS owed; twice in a row, half a second apart, so nothing is in between."""

    async def still() -> bool:
        for service in services:
            health = await service.health()
            if health.outbox_unsent or health.backlog:
                return False
            if any(c.pending or c.ack_pending for c in health.consumers):
                return False
        return True

    async def settled() -> bool:
        if not await still():
            return False
        await asyncio.sleep(0.5)
        return await still()

    await eventually(settled, timeout=60, what="every fact applied and every delivery settled")


async def member_invoices(nc: Client, member_name: str) -> dict[str, tuple[Any, ...]]:
    """Each invoice to the member: who it bills, its totals and status."""
    listed = await request(nc, ListInvoices(limit=1000))
    return {
        row["number"]: (
            row["billed_name"],
            row["net"],
            row["vat"],
            row["gross"],
            row["paid"],
            row["status"],
        )
        for row in listed["invoices"]
        if row["billed_name"] == member_name
    }


def sent_out(mailbox: Mailbox, sms_dir: Path) -> tuple[int, int]:
    return len(mailbox.mails()), len(read_captured(sms_dir)) if sms_dir.exists() else 0


def records_of(document: dict[str, Any], service: str) -> dict[str, list[Any]]:
    return {kind: rows for kind, rows in document["services"][service].items() if rows}


async def test_a_forgotten_person_is_gone_from_every_store_and_stream_and_stays_gone(
    settings: Settings, nc: Client, mailbox: Mailbox, nats_server: NatsServer
) -> None:
    sms_dir = settings.data_dir / "sms"
    async with stack(settings) as services:
        _, events, notifications = services
        member = await request(
            nc,
            JoinMember(
                name="Wigan Council",
                tier="district",
                billing_email=EMAIL,
                phone=PHONE,
                joined_on=date(2026, 4, 1),
            ),
        )
        await request(
            nc,
            AddContact(
                email=EMAIL,
                name=NAME,
                organisation="Wigan Council",
                mobile=PHONE,
                sms_consent=True,
                topics=["warp"],
            ),
        )
        free = await published_event(nc, title="Lean reviews in local government")
        paid = await published_event(
            nc,
            title="Records management course",
            kind="training_course",
            member_price=Money(amount_minor=4500),
        )
        for event_id in (free, paid):
            await request(
                nc,
                BookPlace(
                    event_id=event_id,
                    name=NAME,
                    email=EMAIL,
                    phone=PHONE,
                    sms=True,
                    member_id=member["member_id"],
                ),
            )
        await request(  # a colleague, who is not forgotten
            nc, BookPlace(event_id=free, name="Sam Patel", email="sam.patel@wigan.example.gov.uk")
        )
        await run_to_end(nc, 2026)
        await request(
            nc,
            SendBroadcast(
                topic="warp",
                channels=["email", "sms"],
                template="broadcast",
                data={"headline": "Patch now", "body": "A flaw in a common VPN appliance."},
            ),
        )
        await eventually(
            lambda: len([m for m in mailbox.mails() if EMAIL.lower() in m.to.lower()]) >= 4,
            timeout=30,
            what="the welcome, invoices, booking and broadcast mails",
        )
        await quiet(services)
        invoices_before = await member_invoices(nc, "Wigan Council")
        assert len(invoices_before) >= 2  # the subscription and the paid course place

        # Article 15: what they could ask to see lists every place the test put them.
        document = await export(nc, EMAIL, PHONE, timeout=10)
        held = {service: records_of(document, service) for service in document["services"]}
        flat = json.dumps(document).lower()
        assert "bloggs" in flat and "7911123456" in flat
        assert len(held["events"]["bookings"]) == 2
        assert len(held["events"]["reminders"]) == 4  # a week and a day before each
        assert sum(len(rows) for rows in held["subscriptions"].values()) >= 1 + len(invoices_before)
        notified = json.dumps(held["notifications"]).lower()
        assert all(word in notified for word in ("warp", "sms", "email", "booking_confirmed"))
        sent_before = sent_out(mailbox, sms_dir)
        assert sent_before[1] >= 3  # two booking SMS and the broadcast's

        # Article 17.
        erasure = await erase(nc, EMAIL, PHONE, settings=settings, timeout=30)
        assert erasure.waiting_for == [] and erasure.key_deleted
        assert erasure.answers["events"]["erased"] == {"bookings": 2}
        assert erasure.answers["subscriptions"]["kept"].get("invoices", 0) >= len(invoices_before)

        await asyncio.sleep(1)  # the shredding notice reaches every keyring
        roots = (settings.data_dir, Path(nats_server.store_dir))
        assert files_holding_traces(*roots, skip=(sms_dir,)) == {}
        assert await member_invoices(nc, "Wigan Council") == invoices_before
        after = await export(nc, EMAIL, PHONE, timeout=10)
        assert "bloggs" not in json.dumps(after["services"]).lower()
        assert all(not records_of(after, service) for service in after["services"])

        # Replay every stream into every service, rebuild every read model.
        replays = [
            await service.replay(ReplayRequest(stream=stream))
            for service in services
            for stream in service.consumed_streams()
        ]
        for owner in (events, notifications):
            await owner.rebuild(RebuildRequest())
        await asyncio.sleep(2)  # time for anything wrongly planned to be sent
        await quiet(services)
        assert all(r.failed == 0 and r.applied == 0 for r in replays), replays
        assert sent_out(mailbox, sms_dir) == sent_before
        async with notifications.sessions() as session:
            learnt = await session.scalars(select(DirectoryEntry.email))
            assert not [email for email in learnt if "bloggs" in email.lower()]
        assert files_holding_traces(*roots, skip=(sms_dir,)) == {}
        assert "sam.patel@wigan" in json.dumps(
            await export(nc, "sam.patel@wigan.example.gov.uk", None, timeout=10)
        )
