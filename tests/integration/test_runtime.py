"""The service runtime starts and stops its parts cleanly."""

from __future__ import annotations

import asyncio

from kernel.runtime import Service
from kernel.settings import Settings
from services.events.app import MIGRATIONS


async def test_stopping_outlasts_a_task_that_swallows_its_cancellation(settings: Settings) -> None:
    # nats-py swallows a cancellation that lands inside a publish's flush; a
    # worker that does the same must not keep the service from stopping.
    cancellations = 0

    async def stubborn(service: Service) -> None:
        nonlocal cancellations
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancellations += 1
                if cancellations > 1:
                    raise

    service = Service("probe", migrations_dir=MIGRATIONS, settings=settings)
    service.worker(stubborn)
    async with service.running():
        await asyncio.sleep(0.05)
        await asyncio.wait_for(service.stop_workers(), timeout=10)
    assert cancellations == 2


async def test_a_consumer_waiting_for_its_stream_stops_at_once(settings: Settings) -> None:
    from contracts.subscriptions_v1 import MembershipStarted

    async def ignore(fact: MembershipStarted, ctx: object) -> None:
        return None

    service = Service("probe", migrations_dir=MIGRATIONS, settings=settings)
    service.consume(MembershipStarted)(ignore)
    for _ in range(3):  # nobody declared SUBSCRIPTIONS: the consumer keeps waiting for it
        async with service.running():
            await asyncio.sleep(0.6)
            health = await service.health()
            assert health.consumers == []
