"""The email rate kept by three notifications replicas together, on SQLite and on
PostgreSQL: each replica sends its share of the mail, and the mail server never
receives more than VESTRY_EMAIL_RATE_PER_S messages within any one second."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import pytest

from kernel.runtime import Service
from kernel.settings import Settings
from services.notifications import domain, store
from services.notifications.app import create_service
from services.notifications.mailer import Mailer
from services.notifications.sender import send_due
from tests.conftest import Mailbox
from tests.notifications_support import quick
from tests.stack import membership_started

RATE = 10  # mails a second, the provider's limit
MAILS = 40


@pytest.fixture
def store_services() -> tuple[str, ...]:
    """Only the notifications store goes on PostgreSQL in ``store_settings``."""
    return ("notifications",)


async def send_until_done(service: Service) -> int:
    """This replica's share: what it attempted, round after round, until none is owed."""
    mailer = Mailer(service.settings)
    attempted = 0
    try:
        while True:
            attempted += await send_due(service, mailer)
            async with service.sessions() as session:
                if not await store.owed_now(session):
                    return attempted
            await asyncio.sleep(0.05)
    finally:
        await mailer.close()


def most_within_one_second(moments: list[float]) -> int:
    """The most of ``moments`` (seconds, sorted) that fall within any one second."""
    most, first = 0, 0
    for last, moment in enumerate(moments):
        while moment - moments[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


def received_at(mailbox: Mailbox) -> list[float]:
    """When the mail server took each message, by its own clock (the capture's file names)."""
    return sorted(
        datetime.strptime(mail.path.name.split("-")[0], "%Y%m%dT%H%M%S%f")
        .replace(tzinfo=UTC)
        .timestamp()
        for mail in mailbox.mails()
    )


@pytest.mark.slow
async def test_three_replicas_together_keep_to_the_providers_email_rate(
    store_settings: Settings, mailbox: Mailbox
) -> None:
    # Three rows in flight per replica, so that every replica claims its share.
    settings = quick(store_settings, email_rate_per_s=RATE, send_concurrency=3)
    async with AsyncExitStack() as stack:
        services = [
            await stack.enter_async_context(create_service(settings).running()) for _ in range(3)
        ]
        for service in services:
            await service.stop_workers()  # the senders are driven here, all at once
        async with services[0].sessions() as session, session.begin():
            for number in range(MAILS):
                await store.plan_delivery(
                    session, f"cause-{number}", domain.welcome(membership_started(number))
                )

        shares = await asyncio.gather(*(send_until_done(s) for s in services))

        async with services[0].sessions() as session:
            sent = await store.count_deliveries(session, "sent")
    assert sum(shares) == sent == MAILS
    assert all(shares), shares  # every replica sent some
    moments = received_at(mailbox)
    assert len(moments) == MAILS
    assert most_within_one_second(moments) <= RATE, moments
