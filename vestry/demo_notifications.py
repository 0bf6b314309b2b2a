"""The demo's alerts step: a WARP security advisory to the councils that follow it.

A few of the reference councils' contacts subscribe to the ``warp`` topic with
email and SMS consent (one of them by email only); then an advisory goes out
by email and SMS, marked urgent so that quiet hours do not hold it back, while
a progress bar follows the sending. Run again, the contacts are updated in
place and a new advisory goes out: each broadcast is its own.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nats.aio.client import Client
from rich.progress import Progress

from contracts.notifications_v1 import AddContact, BroadcastStatus, SendBroadcast
from kernel.commands import request
from vestry.demo import UPPER_TIER, reference_members

WARP_COUNCILS = UPPER_TIER[:6]
ADVISORY = {
    "reference": "WARP-2026-014",
    "severity": "high",
    "title": "Phishing emails posing as council tax refunds",
    "summary": (
        "Staff in three member councils received emails that offer a council tax refund and "
        "link to a fake Microsoft 365 sign-in page that harvests credentials."
    ),
    "action": "Block the sender domain, warn staff and reset any password typed in.",
}


def warp_contacts() -> list[AddContact]:
    """The security officers of the first upper-tier councils, on their billing contact's address."""
    emails = {member.name: str(member.billing_email) for member in reference_members()}
    contacts = []
    for n, council in enumerate(WARP_COUNCILS):
        by_sms = n != len(WARP_COUNCILS) - 1  # the last one asked for email only
        contacts.append(
            AddContact(
                email=emails[council],
                organisation=council,
                mobile=f"07400 900{n:03d}" if by_sms else None,
                sms_consent=by_sms,
                topics=["warp"],
            )
        )
    return contacts


async def run_notifications_demo(
    nc: Client, progress: Progress | None = None, *, timeout: float = 60
) -> dict[str, Any]:
    """Subscribe the WARP contacts and send them an advisory; returns what went out."""
    for contact in warp_contacts():
        await request(nc, contact)
    answer = await request(
        nc,
        SendBroadcast(
            topic="warp",
            channels=["email", "sms"],
            template="security_advisory",
            data=ADVISORY,
            urgent=True,
        ),
        timeout=60,
    )
    task = (
        progress.add_task("WARP advisory", total=max(answer["planned"], 1))
        if progress is not None
        else None
    )
    status = answer
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        status = await request(nc, BroadcastStatus(broadcast_id=answer["broadcast_id"]))
        if progress is not None and task is not None:
            progress.update(task, completed=status["sent"] + status["failed"])
        if status["completed"]:
            break
        await asyncio.sleep(0.2)
    return {
        "broadcast_id": answer["broadcast_id"],
        "topic": "warp",
        "advisory": ADVISORY["reference"],
        "subscribers": answer["recipients"],
        "planned": answer["planned"],
        "sent": status.get("sent", 0),
        "failed": status.get("failed", 0),
        "skipped_for_consent": answer["skipped_for_consent"],
        "completed": status.get("completed", False),
    }
