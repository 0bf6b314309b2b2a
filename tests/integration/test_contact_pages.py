"""5,000 contacts list in pages: every one once, in order, no answer near NATS's limit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from nats.aio.client import Client
from sqlalchemy import insert

from contracts import Envelope
from contracts.notifications_v1 import ListContacts
from contracts.system_v1 import Reply
from kernel.commands import request
from kernel.settings import Settings
from services.notifications import store
from services.notifications.app import create_service

PEOPLE = 5_000


async def test_five_thousand_contacts_list_in_pages_each_once_and_in_order(
    settings: Settings, nc: Client
) -> None:
    async with create_service(settings).running() as notifications:
        emails = [f"person{n:05d}@council{n % 40}.example.gov.uk" for n in range(PEOPLE)]
        now = datetime.now(UTC)
        async with notifications.sessions() as session, session.begin():
            await session.execute(
                insert(store.Contact),
                [
                    {
                        "id": str(uuid.uuid4()),
                        "email": email,
                        "name": f"Person {n}",
                        "source": "import",
                        "added_at": now,
                    }
                    for n, email in enumerate(emails)
                ],
            )

        listed: list[str] = []
        after: str | None = None
        biggest = pages = 0
        while True:
            command = ListContacts(after=after, limit=500)
            response = await nc.request(
                command.SUBJECT, Envelope.wrap(command).to_bytes(), timeout=30
            )
            reply = Reply.model_validate_json(response.data)
            assert reply.ok and reply.data is not None, reply.error
            biggest = max(biggest, len(response.data))
            listed += [c["email"] for c in reply.data["contacts"]]
            pages += 1
            after = reply.data["next"]
            if after is None:
                break

        assert listed == sorted(emails) and pages == PEOPLE // 500
        assert biggest < nc.max_payload / 4  # far from what NATS may carry
        small = await request(nc, ListContacts(after=emails[-3], limit=10))
        assert [c["email"] for c in small["contacts"]] == sorted(emails)[-2:]
        assert small["next"] is None
