"""NATS stopped for five seconds mid-flow: facts wait in the outbox, nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import time

from nats.aio.client import Client

from contracts import Envelope
from contracts.subscriptions_v1 import JoinMember
from kernel.commands import answer
from kernel.settings import Settings
from services.subscriptions import handlers
from tests.conftest import Mailbox, eventually
from tests.stack import deliveries_per_cause, join, join_command, membership_views, stack
from vestry.natsserver import NatsServer
from vestry.status import service_state


async def test_nats_down_for_five_seconds_loses_and_doubles_nothing(
    settings: Settings, nats_server: NatsServer, nc: Client, mailbox: Mailbox
) -> None:
    async with stack(settings) as (subscriptions, events, notifications):
        for number in range(20):
            await join(nc, number)

        nats_server.stop()
        stopped = time.monotonic()
        # While the bus is down, members still join: the facts wait in the outbox.
        for number in range(20, 40):
            reply = await answer(
                Envelope.wrap(join_command(number)).to_bytes(),
                model=JoinMember,
                handler=handlers.join_member,
                sessions=subscriptions.sessions,
                on_commit=subscriptions.wake_relay,
            )
            assert reply.ok, reply.error
        await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - stopped)))
        nats_server.start()

        await eventually(lambda: nc.is_connected, what="client reconnected")
        # Each service reconnects on its own schedule; commands wait until subscriptions answers.
        await eventually(
            lambda: _answers(nc, "subscriptions"), timeout=30, what="subscriptions back"
        )
        for number in range(40, 60):
            await join(nc, number)

        await eventually(lambda: membership_views(events), timeout=30)
        await eventually(
            lambda: _views_are(events, 60), timeout=30, what="60 memberships in events"
        )
        await eventually(lambda: len(mailbox.mails()) >= 60, timeout=30, what="60 welcome mails")
        per_cause = await deliveries_per_cause(notifications)
        assert len(per_cause) == 60 and set(per_cause.values()) == {1}
        assert len(mailbox.mails()) == 60
        info = await nc.jetstream().stream_info("SUBSCRIPTIONS")
        assert info.state.messages == 60
        recipients = sorted(mail.to for mail in mailbox.mails())
        assert len(set(recipients)) == 60


async def _answers(nc: Client, service: str) -> bool:
    return (await service_state(nc, service)).up


async def _views_are(events, expected: int) -> bool:  # type: ignore[no-untyped-def]
    return await membership_views(events) == expected
