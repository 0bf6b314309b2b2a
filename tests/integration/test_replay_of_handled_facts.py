"""A replay skips what the service has already handled before opening it, applies
what it has not, and still dead-letters a message that was never a fact."""

from __future__ import annotations

from nats.aio.client import Client

from contracts.subscriptions_v1 import MembershipStarted
from contracts.system_v1 import ReplayRequest
from kernel.deadletter import read_dead_letters
from kernel.runtime import Service
from kernel.settings import Settings
from services.events.app import MIGRATIONS
from services.events.handlers import on_membership_started
from tests.conftest import eventually
from tests.stack import membership_started, membership_views, publish_fact


async def test_replaying_handled_facts_beside_a_broken_message_changes_nothing_else(
    settings: Settings, nc: Client, streams: None
) -> None:
    probe = Service("probe", migrations_dir=MIGRATIONS, settings=settings)
    probe.consume(MembershipStarted)(on_membership_started)
    async with probe.running():
        for number in range(3):
            await publish_fact(nc, membership_started(number))
        await eventually(lambda: _views_are(probe, 3), what="3 memberships learnt live")
        await probe.stop_workers()  # the replay alone from here
        await nc.jetstream().publish(MembershipStarted.SUBJECT, b"not an envelope")
        await publish_fact(nc, membership_started(3))  # one the service has not seen

        report = await probe.replay(ReplayRequest(stream="SUBSCRIPTIONS"))
        again = await probe.replay(ReplayRequest(stream="SUBSCRIPTIONS"))

        assert (report.matched, report.applied, report.skipped, report.failed) == (5, 1, 3, 1)
        assert report.by_type == {"(not an envelope)": 1, "MembershipStarted.v1": 4}
        assert (again.applied, again.skipped, again.failed) == (0, 4, 1)
        assert await membership_views(probe) == 4
        letters = await read_dead_letters(nc.jetstream())
        assert [letter.kind for letter in letters] == ["malformed", "malformed"]


async def _views_are(service: Service, expected: int) -> bool:
    return await membership_views(service) == expected
