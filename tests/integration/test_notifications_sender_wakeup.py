"""The sender is woken when deliveries are planned, once their transaction commits: not
when a savepoint inside it is released, and not for a transaction rolled back."""

from __future__ import annotations

import pytest

from kernel import migrations
from kernel.settings import Settings
from services.notifications import domain, store, wakeup
from services.notifications.app import MIGRATIONS, create_service


def welcome_to(email: str) -> domain.PlannedDelivery:
    return domain.PlannedDelivery(email, "email", "welcome", {"member_name": "Bury"})


async def test_planned_deliveries_wake_the_sender_when_committed_and_only_then(
    settings: Settings,
) -> None:
    service = create_service(settings)
    await migrations.upgrade(service.engine, MIGRATIONS)
    woken: list[str] = []
    stop = wakeup.listen(lambda: woken.append("woken"))
    try:
        async with service.sessions() as session, session.begin():
            async with session.begin_nested():
                await store.plan_delivery(session, "cause-1", welcome_to("ann@bury.example"))
            assert woken == []  # planned, not committed yet
        assert woken == ["woken"]

        with pytest.raises(RuntimeError):
            async with service.sessions() as session, session.begin():
                await store.plan_delivery(session, "cause-2", welcome_to("ben@wigan.example"))
                raise RuntimeError("rolled back")
        async with service.sessions() as session, session.begin():
            await store.count_deliveries(session)  # a commit that planned nothing
        assert woken == ["woken"]
    finally:
        stop()
        await service.engine.dispose()
