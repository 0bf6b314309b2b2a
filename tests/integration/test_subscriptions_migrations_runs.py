"""Upgrading a subscriptions store, on SQLite and on PostgreSQL: to 0009 (one active
invoicing run per year), where replicas racing before it left two runs of a year
going, the oldest goes on and the other is marked interrupted, and after it the store
itself refuses a second run of a year going; to 0011, a run's totals in 64 bits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import DateTime, bindparam, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from kernel import migrations
from kernel.settings import Settings
from kernel.store import create_engine
from services.subscriptions.app import MIGRATIONS


@pytest.fixture
def store_services() -> tuple[str, ...]:
    """Only the subscriptions store goes on PostgreSQL in ``store_settings``."""
    return ("subscriptions",)


@pytest.fixture
async def engine(store_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(store_settings.database_url("subscriptions"))
    yield engine
    await engine.dispose()


AT = datetime(2026, 4, 1, 10, tzinfo=UTC)
RUN = text(
    "INSERT INTO invoice_runs (id, year, status, trigger, issued_on, created_at, lease_until,"
    " to_bill, already_billed, issued, skipped, net_pence, gross_pence)"
    " VALUES (:id, :year, :status, 'operator', '2026-04-01', :created, :created,"
    " 45, 0, 0, 0, 0, 0)"
).bindparams(bindparam("created", type_=DateTime(timezone=True)))


async def test_two_runs_of_a_year_left_going_become_one_and_a_third_is_refused(
    engine: AsyncEngine,
) -> None:
    await migrations.upgrade(engine, MIGRATIONS, revision="0008")
    runs = [
        ("first", 2026, "running", AT),
        ("second", 2026, "queued", AT + timedelta(seconds=1)),
        ("done", 2026, "completed", AT - timedelta(hours=1)),
        ("other-year", 2025, "queued", AT + timedelta(seconds=2)),
    ]
    async with engine.begin() as connection:
        for run_id, year, status, created in runs:
            await connection.execute(
                RUN, {"id": run_id, "year": year, "status": status, "created": created}
            )

    await migrations.upgrade(engine, MIGRATIONS)

    async with engine.connect() as connection:
        rows = await connection.execute(text("SELECT id, status, error FROM invoice_runs"))
        after = {run_id: (status, error) for run_id, status, error in rows}
    assert after["first"] == ("running", None)
    assert after["second"] == (
        "interrupted",
        "another run of the year was going; left to it",
    )
    assert after["done"] == ("completed", None)
    assert after["other-year"] == ("queued", None)
    with pytest.raises(IntegrityError):
        async with engine.begin() as connection:
            await connection.execute(
                RUN,
                {
                    "id": "third",
                    "year": 2026,
                    "status": "queued",
                    "created": AT + timedelta(days=1),
                },
            )


async def test_a_run_of_a_large_partnership_totals_past_32_bits_after_0011(
    engine: AsyncEngine,
) -> None:
    """50,000 members at the reference prices come to about £175m: 17,500,000,000 pence,
    past a 32-bit integer's 2,147,483,647. Kept before 0010 on SQLite, refused on
    PostgreSQL; kept on both from 0011, and an upgraded store keeps its runs."""
    await migrations.upgrade(engine, MIGRATIONS, revision="0010")
    async with engine.begin() as connection:
        await connection.execute(
            RUN, {"id": "old", "year": 2025, "status": "completed", "created": AT}
        )

    await migrations.upgrade(engine, MIGRATIONS)

    total = 17_500_000_000
    async with engine.begin() as connection:
        await connection.execute(
            RUN, {"id": "large", "year": 2026, "status": "running", "created": AT}
        )
        await connection.execute(
            text(
                "UPDATE invoice_runs SET net_pence = :total, gross_pence = :total WHERE id = 'large'"
            ),
            {"total": total},
        )
    async with engine.connect() as connection:
        rows = await connection.execute(text("SELECT id, net_pence, gross_pence FROM invoice_runs"))
        after = {run_id: (net, gross) for run_id, net, gross in rows}
    assert after == {"old": (0, 0), "large": (total, total)}
