"""The notifications service SIGKILLed mid-broadcast: after a restart every person has
their email, and the only duplicates are the messages each SMTP connection had in
flight (accepted by the server, not yet recorded) when it died: at most one each."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

from nats.aio.client import Client

from contracts.notifications_v1 import SendBroadcast
from contracts.system_v1 import health_subject
from kernel.commands import request
from kernel.settings import Settings
from services.notifications.app import create_service
from tests.conftest import Mailbox, eventually
from tests.notifications_support import subscribe_many
from vestry.mailcapture import read_mailbox

PEOPLE = 2000
CONNECTIONS = 4  # VESTRY_SEND_CONCURRENCY: one SMTP connection per sending slot


def start_notifications(settings: Settings, mailbox: Mailbox, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "VESTRY_NATS_URL": settings.nats_url,
        "VESTRY_DATA_DIR": str(settings.data_dir),
        "VESTRY_SMTP_PORT": str(mailbox.port),
        "VESTRY_EMAIL_RATE_PER_S": "2000",
        "VESTRY_SEND_CONCURRENCY": str(CONNECTIONS),
        "VESTRY_DELIVERY_CLAIM_LEASE_S": "2",
        "VESTRY_QUIET_HOURS": "",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.notifications"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def sent_rows(database: Path) -> int:
    with sqlite3.connect(database, timeout=10) as connection:
        return connection.execute(
            "select count(*) from deliveries where status = 'sent'"
        ).fetchone()[0]


def captured(mailbox: Mailbox) -> int:
    directory = mailbox.directory
    return len(list(directory.glob("*.eml"))) if directory.exists() else 0


async def answering(nc: Client) -> bool:
    try:
        await nc.request(health_subject("notifications"), b"", timeout=1)
    except Exception:
        return False
    return True


async def test_a_kill_mid_broadcast_loses_nobody_and_resends_at_most_one_per_connection(
    settings: Settings, nc: Client, mailbox: Mailbox, tmp_path: Path
) -> None:
    log = tmp_path / "notifications.log"
    # The people following the topic, put in the store before the service starts on it.
    seeded = create_service(settings)
    await subscribe_many(seeded, PEOPLE)
    await seeded.engine.dispose()
    service = start_notifications(settings, mailbox, log)
    try:
        await eventually(lambda: answering(nc), timeout=60, what="notifications up")
        answer = await request(
            nc,
            SendBroadcast(
                topic="warp",
                channels=["email"],
                template="broadcast",
                data={"headline": "Patch now", "body": "A critical update is out."},
            ),
        )
        assert answer["recipients"] == PEOPLE
        await eventually(lambda: captured(mailbox) >= PEOPLE // 4, timeout=120, what="sending")
        service.send_signal(signal.SIGKILL)
        service.wait()
        before_restart = captured(mailbox)
        assert before_restart < PEOPLE, "killed too late to prove anything"

        service = start_notifications(settings, mailbox, log)
        database = settings.data_dir / "notifications.sqlite3"
        await eventually(lambda: sent_rows(database) == PEOPLE, timeout=180, what="every row sent")
    finally:
        service.terminate()
        service.wait(15)

    ids = Counter(mail.message["Message-ID"] for mail in read_mailbox(mailbox.directory))
    recipients = {mail.to for mail in read_mailbox(mailbox.directory)}
    assert len(ids) == PEOPLE and len(recipients) == PEOPLE  # nobody lost
    duplicates = sum(count - 1 for count in ids.values())
    assert duplicates <= CONNECTIONS, f"{duplicates} duplicates with {CONNECTIONS} connections"
    assert "Traceback" not in log.read_text()
