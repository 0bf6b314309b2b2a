"""The delivery ledger's sender: each row sent once, even with two replicas sending."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from kernel.settings import Settings
from services.notifications import domain, store
from services.notifications.app import create_service
from services.notifications.mailer import Mailer
from services.notifications.sender import send_due
from tests.conftest import Mailbox, eventually
from tests.stack import membership_started


async def test_two_replicas_sending_the_same_ledger_send_each_row_once(
    settings: Settings, mailbox: Mailbox
) -> None:
    replica_a, replica_b = create_service(settings), create_service(settings)
    async with replica_a.running(), replica_b.running():
        await replica_a.stop_workers()  # drive the senders by hand
        await replica_b.stop_workers()
        async with replica_a.sessions() as session, session.begin():
            for number in range(20):
                await store.plan_delivery(
                    session, f"cause-{number}", domain.welcome(membership_started(number))
                )
        attempted = await asyncio.gather(
            send_due(replica_a, Mailer(settings)), send_due(replica_b, Mailer(settings))
        )
        async with replica_a.sessions() as session:
            sent = await store.count_deliveries(session, "sent")

    assert sum(attempted) == 20
    assert sent == 20
    recipients = [mail.to for mail in mailbox.mails()]
    assert len(recipients) == 20 and len(set(recipients)) == 20


async def test_a_mail_server_that_refuses_leaves_the_row_for_a_later_attempt(
    settings: Settings, mailbox: Mailbox
) -> None:
    service = create_service(settings.model_copy(update={"smtp_port": 1}))
    async with service.running():
        await service.stop_workers()
        async with service.sessions() as session, session.begin():
            await store.plan_delivery(session, "cause-1", domain.welcome(membership_started(1)))
        assert await send_due(service, Mailer(service.settings)) == 1
        assert await send_due(service, Mailer(service.settings)) == 0  # not due again yet
        async with service.sessions() as session:
            row = await session.scalar(select(store.Delivery))
    assert row.status == "pending" and row.attempts == 1
    assert "SMTPConnectError" in (row.last_error or "")
    assert mailbox.mails() == []


async def test_health_shows_mail_still_owed_until_it_is_sent(
    settings: Settings, mailbox: Mailbox
) -> None:
    service = create_service(settings)
    async with service.running():
        await service.stop_workers()  # the sender is off: the mail waits
        async with service.sessions() as session, session.begin():
            for number in range(3):
                await store.plan_delivery(
                    session, f"cause-{number}", domain.welcome(membership_started(number))
                )
        assert (await service.health()).backlog == 3
        await service.start_workers()
        await eventually(lambda: len(mailbox.mails()) == 3)
        await eventually(lambda: _backlog_is(service, 0))


async def _backlog_is(service, expected: int) -> bool:  # type: ignore[no-untyped-def]
    return (await service.health()).backlog == expected
