"""After the demo, replaying every stream from the start into every service that reads
it adds no invoice, no booking change, no email and no SMS."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nats.aio.client import Client
from sqlalchemy import func, select

from contracts.system_v1 import ReplayRequest
from kernel.runtime import Service
from kernel.settings import Settings
from services.notifications.sms import read_captured
from services.subscriptions.store import Invoice
from tests.conftest import Mailbox
from tests.stack import delivery_count, stack
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


async def test_replaying_every_stream_into_every_service_after_the_demo_changes_nothing(
    settings: Settings, nc: Client, mailbox: Mailbox, tmp_path: Path
) -> None:
    async with stack(settings) as services:
        subscriptions, _events, notifications = services
        summary = await run_demo(nc, tmp_path)  # mail in tmp_path/mail: the mailbox fixture's
        assert summary["invoicing"]["invoices_for_year"] == 45 and summary["dead_letters"] == 0
        before = await counts(nc, subscriptions, notifications, mailbox, settings.data_dir / "sms")

        replays = []
        for service in services:
            for stream in service.consumed_streams():
                replays.append(await service.replay(ReplayRequest(stream=stream)))
        await asyncio.sleep(2)  # time for anything wrongly planned or published to show
        after = await counts(nc, subscriptions, notifications, mailbox, settings.data_dir / "sms")

    assert {(r.service, r.stream) for r in replays} == {
        ("subscriptions", "EVENTS"),
        ("events", "SUBSCRIPTIONS"),
        ("notifications", "EVENTS"),
        ("notifications", "SUBSCRIPTIONS"),
    }
    assert all(r.matched > 0 and r.applied == 0 and r.failed == 0 for r in replays), replays
    assert after == before
    assert before["emails"] > 45 and before["SMS"] > 0 and before["invoices and credit notes"] >= 45
