"""A broadcast's text is stored once, with the broadcast, not once per recipient: a
500 KB body to 2,000 people takes 500 KB of the store, and every one of them still
gets all of it, with their own name and unsubscribe link."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from nats.aio.client import Client
from sqlalchemy import MetaData, select

from contracts.notifications_v1 import SendBroadcast
from kernel.commands import request
from kernel.runtime import Service
from kernel.settings import Settings
from services.notifications.app import create_service
from services.notifications.directory import contact_id_for
from services.notifications.mailer import Mailer
from services.notifications.sender import send_due
from tests.conftest import Mailbox, eventually
from tests.notifications_support import quick, subscribe_many

MARKER = "BODY-STARTS-7f3a9c"
KB = 1024


def long_body(size: int) -> str:
    """A body of ``size`` characters that names ``MARKER`` once, at its start."""
    line = "Patch every exposed gateway before Friday; the advisory has the details.\n"
    return MARKER + "\n" + (line * (size // len(line) + 1))[: size - len(MARKER) - 1]


async def marker_count(service: Service) -> int:
    """How many times ``MARKER`` is in any value of any table of the store."""
    metadata = MetaData()
    found = 0
    async with service.engine.connect() as connection:
        await connection.run_sync(metadata.reflect)
        for table in metadata.sorted_tables:
            for row in await connection.execute(select(table)):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        value = bytes(value).decode(errors="replace")
                    if isinstance(value, str):
                        found += value.count(MARKER)
    return found


def plain(text: str) -> str:
    """A mail's text with its lines ended as the body's are (SMTP ends them CRLF)."""
    return text.replace("\r\n", "\n")


def store_files(settings: Settings) -> list[Path]:
    database = settings.data_dir / "notifications.sqlite3"
    return [path for path in database.parent.glob("notifications.sqlite3*") if path.is_file()]


async def test_a_500_kb_broadcast_to_2000_people_stores_its_body_once(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    settings = quick(settings)
    body = long_body(500 * KB)
    service = create_service(settings)
    async with service.running():
        await service.stop_workers()  # nothing sent yet: what the store holds is the plan
        await subscribe_many(service, 2000)

        answer = await request(
            nc,
            SendBroadcast(
                topic="warp",
                channels=["email"],
                template="broadcast",
                data={"headline": "Patch your gateways", "body": body},
            ),
            timeout=60,
        )

        assert answer["planned"] == 2000
        assert await marker_count(service) == 1
        files = store_files(settings)
        on_disk = b"".join(path.read_bytes() for path in files)
        assert on_disk.count(MARKER.encode()) <= 2  # the database and its log, at most
        assert sum(path.stat().st_size for path in files) < 10 * 500 * KB  # not 2,000 copies

        # The first batch goes: each gets all of it, under their own name and link.
        sent = await send_due(service, Mailer(service.settings))
        mails = await eventually(lambda: len(mailbox.mails()) == sent and mailbox.mails())

    assert sent > 1
    for mail in mails:
        text = plain(mail.text())
        assert body.strip() in text
        name = mail.to.split("@")[0].replace("officer", "Officer ")
        assert f"Hello {name}," in text
        link = mail.message["List-Unsubscribe"].strip("<>")
        assert parse_qs(urlsplit(link).query)["c"] == [contact_id_for(mail.to)]


async def test_each_recipient_gets_the_whole_broadcast_with_their_own_name(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    settings = quick(settings)
    body = long_body(100 * KB)
    service = create_service(settings)
    async with service.running():
        await subscribe_many(service, 5)
        await request(
            nc,
            SendBroadcast(
                topic="warp",
                channels=["email"],
                template="broadcast",
                data={"headline": "Patch your gateways", "body": body},
            ),
        )
        await eventually(lambda: len(mailbox.mails()) == 5, what="all five mails")
        stored = await marker_count(service)

    assert stored == 1
    by_name = {mail.to: mail for mail in mailbox.mails()}
    assert len(by_name) == 5
    for n in range(5):
        mail = by_name[f"officer{n:05d}@council.example"]
        assert mail.subject == "Patch your gateways"
        text = plain(mail.text())
        assert body.strip() in text
        assert f"Hello Officer {n:05d}," in text
        assert "You get this because you follow warp." in text
