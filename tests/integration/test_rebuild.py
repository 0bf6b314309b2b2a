"""A rebuild drops a read model and replays the streams: the same rows as live traffic built."""

from __future__ import annotations

import pytest
from nats.aio.client import Client
from sqlalchemy import delete, select, update

from contracts.subscriptions_v1 import MembershipStarted
from contracts.system_v1 import RebuildRequest
from kernel.commands import Refused
from kernel.runtime import Service
from kernel.settings import Settings
from services.events.app import MIGRATIONS
from services.events.handlers import on_membership_started
from services.events.store import MembershipView
from tests.conftest import eventually
from tests.stack import membership_started, membership_views, publish_fact


async def rows(service: Service) -> list[tuple[object, ...]]:
    async with service.sessions() as session:
        result = await session.execute(select(MembershipView.__table__).order_by("membership_id"))
        return [tuple(row) for row in result]


async def test_rebuild_gives_back_what_live_traffic_built(
    settings: Settings, nc: Client, streams: None
) -> None:
    probe = Service("probe", migrations_dir=MIGRATIONS, settings=settings)
    probe.consume(MembershipStarted)(on_membership_started)
    probe.read_model([MembershipView.__table__], {MembershipStarted: on_membership_started})
    async with probe.running():
        for number in range(20):
            await publish_fact(nc, membership_started(number))
        await eventually(lambda: _views_are(probe, 20))
        live = await rows(probe)
        async with probe.sessions() as session, session.begin():  # a bug damages the read model
            await session.execute(
                delete(MembershipView).where(MembershipView.member_name < "Council 14")
            )
            await session.execute(update(MembershipView).values(tier="gold"))

        report = await probe.rebuild(RebuildRequest())

        assert await rows(probe) == live
        assert report.rows_after == {"membership_view": 20}
        assert [(r.stream, r.matched, r.applied, r.failed) for r in report.replayed] == [
            ("SUBSCRIPTIONS", 20, 20, 0)
        ]
        await publish_fact(nc, membership_started(99))  # live consumption resumed
        await eventually(lambda: _views_are(probe, 21))


async def test_a_service_without_a_read_model_says_so(settings: Settings, streams: None) -> None:
    probe = Service("probe", migrations_dir=MIGRATIONS, settings=settings)
    async with probe.running():
        with pytest.raises(Refused, match="keeps no read model"):
            await probe.rebuild(RebuildRequest())


async def _views_are(service: Service, expected: int) -> bool:
    return await membership_views(service) == expected
