"""The demo's alerts step against the running service: an advisory by email and SMS."""

from __future__ import annotations

from nats.aio.client import Client

from kernel.settings import Settings
from services.notifications.app import create_service
from services.notifications.sms import read_captured
from tests.conftest import Mailbox
from tests.notifications_support import quick
from vestry.demo_notifications import WARP_COUNCILS, run_notifications_demo


async def test_the_demo_sends_a_warp_advisory_by_email_and_sms(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    # Quiet hours stay on: the advisory is urgent, so it goes at any hour.
    settings = quick(settings, quiet_hours="00:00-23:59")
    async with create_service(settings).running():
        summary = await run_notifications_demo(nc)
        again = await run_notifications_demo(nc)  # a second advisory: sent again, once each

    councils = len(WARP_COUNCILS)
    assert summary["completed"] and summary["failed"] == 0
    assert (summary["subscribers"], summary["sent"]) == (councils, 2 * councils - 1)
    assert summary["skipped_for_consent"] == 1
    assert again["broadcast_id"] != summary["broadcast_id"]
    assert len(mailbox.mails()) == 2 * councils
    assert len(read_captured(settings.data_dir / "sms")) == 2 * (councils - 1)
    assert all("WARP-2026-014" in m.subject for m in mailbox.mails())
