"""After the demo, replaying every stream from the start into every service that reads
it adds no invoice, no booking change, no email and no SMS; and rebuilding every read
model from the streams gives back, row for row, what live traffic built."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nats.aio.client import Client
from sqlalchemy import func, select

from contracts.system_v1 import RebuildRequest, ReplayRequest
from kernel.runtime import Service
from kernel.settings import Settings
from services.events.store import MembershipView
from services.notifications.sms import read_captured
from services.notifications.store import DirectoryEntry
from services.subscriptions.store import Invoice
from tests.conftest import Mailbox
from tests.stack import delivery_count, stack, table_rows
from vestry.demo_run import run_demo


def sms_count(sms_dir: Path) -> int:
    return len(read_captured(sms_dir)) if sms_dir.exists() else 0


async def counts(
    nc: Client, subscriptions: Service, notifications: Service, mailbox: Mailbox, sms_dir: Path
) -> dict[str, int]:
    js = nc.jetstream()
    async with subscriptions.sessions() as session:
        invoices = await session.scalar(select(func.count()).select_from(Invoice)) or 0
    return {
        "invoices and credit notes": invoices,
        "facts in SUBSCRIPTIONS": (await js.stream_info("SUBSCRIPTIONS")).state.messages,
        "facts in EVENTS (booking changes)": (await js.stream_info("EVENTS")).state.messages,
        "facts in NOTIFICATIONS": (await js.stream_info("NOTIFICATIONS")).state.messages,
        "ledger rows": await delivery_count(notifications),
        "emails": len(mailbox.mails()),
        "SMS": sms_count(sms_dir),
    }


async def test_after_the_demo_replaying_every_stream_and_rebuilding_every_read_model_change_nothing(
    settings: Settings, nc: Client, mailbox: Mailbox, tmp_path: Path
) -> None:
    async with stack(settings) as services:
        subscriptions, events, notifications = services
        summary = await run_demo(nc, tmp_path)  # mail in tmp_path/mail: the mailbox fixture's
        assert summary["invoicing"]["invoices_for_year"] == 45 and summary["dead_letters"] == 0
        before = await counts(nc, subscriptions, notifications, mailbox, settings.data_dir / "sms")

        replays = []
        for service in services:
            for stream in service.consumed_streams():
                replays.append(await service.replay(ReplayRequest(stream=stream)))
        await asyncio.sleep(2)  # time for anything wrongly planned or published to show
        after = await counts(nc, subscriptions, notifications, mailbox, settings.data_dir / "sms")

        read_models = {MembershipView.__table__: events, DirectoryEntry.__table__: notifications}
        live = {table.name: await table_rows(owner, table) for table, owner in read_models.items()}
        for owner in (events, notifications):
            await owner.rebuild(RebuildRequest())
        rebuilt = {
            table.name: await table_rows(owner, table) for table, owner in read_models.items()
        }
        await asyncio.sleep(2)
        after_rebuild = await counts(
            nc, subscriptions, notifications, mailbox, settings.data_dir / "sms"
        )

    assert {(r.service, r.stream) for r in replays} == {
        ("subscriptions", "EVENTS"),
        ("events", "SUBSCRIPTIONS"),
        ("notifications", "EVENTS"),
        ("notifications", "SUBSCRIPTIONS"),
        *((service, "PEOPLE") for service in ("subscriptions", "events", "notifications")),
    }
    facts = [r for r in replays if r.stream != "PEOPLE"]  # nobody was erased in the demo
    assert all(r.matched > 0 and r.applied == 0 and r.failed == 0 for r in facts), replays
    assert after == before
    assert rebuilt == live and len(live["membership_view"]) == 45 and len(live["directory"]) > 45
    assert after_rebuild == before
    assert before["emails"] > 45 and before["SMS"] > 0 and before["invoices and credit notes"] >= 45
