"""Upgrading a subscriptions store that already holds invoices, lines, payments and
reminders to the money rules of 0003, on SQLite and on PostgreSQL: everything stays,
and from then on the store itself refuses more paid than billed or money on a void
invoice; books that already break a rule stop the upgrade with the invoice numbers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
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


INVOICE = (
    "INSERT INTO invoices (id, kind, series, number, purpose, year, membership_id,"
    " billed_name, billing_email, issued_on, net_pence, vat_pence, gross_pence, paid_pence,"
    " status) VALUES (:id, :kind, :series, :number, :purpose, 2008, :membership, 'Bury',"
    " 'finance@bury.example.gov.uk', '2008-04-01', 200000, 0, 200000, :paid, :status)"
)


async def books_at_0002(engine: AsyncEngine, *, void_paid: int = 0) -> None:
    """A store at 0002 with a part-paid invoice (a line, a payment, a reminder), a credit
    note against it and a void invoice holding ``void_paid``."""
    await migrations.upgrade(engine, MIGRATIONS, revision="0002")
    documents = [
        ("i1", "invoice", "INV", 1, "recurring", "ms-1", 50_000, "part_paid"),
        ("c1", "credit_note", "CN", 1, "tier_change", "ms-1", 0, "issued"),
        ("i2", "invoice", "INV", 2, "tier_change", "ms-1", void_paid, "void"),
    ]
    keys = ("id", "kind", "series", "number", "purpose", "membership", "paid", "status")
    async with engine.begin() as connection:
        for document in documents:
            await connection.execute(text(INVOICE), dict(zip(keys, document, strict=True)))
        await connection.execute(
            text(
                "INSERT INTO invoice_lines (invoice_id, position, description, months,"
                " net_pence, vat_basis_points, vat_pence)"
                " VALUES ('i1', 1, 'District council', 12, 200000, 0, 0)"
            )
        )
        await connection.execute(
            text(
                "INSERT INTO payments (id, invoice_id, amount_pence, received_on, recorded_at)"
                " VALUES ('p1', 'i1', 50000, '2008-04-20', '2008-04-20 10:00:00+00')"
            )
        )
        await connection.execute(
            text(
                "INSERT INTO reminders (invoice_id, stage, sent_on) VALUES ('i1', 'first', '2008-05-02')"
            )
        )


async def count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as connection:
        return (await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()


async def test_an_upgrade_keeps_the_books_and_then_the_store_refuses_impossible_money(
    engine: AsyncEngine,
) -> None:
    await books_at_0002(engine)
    await migrations.upgrade(engine, MIGRATIONS, revision="0003")

    assert await migrations.current_revision(engine) == "0003"
    counts = [
        await count(engine, t) for t in ("invoices", "invoice_lines", "payments", "reminders")
    ]
    assert counts == [3, 1, 1, 1]
    for change, rule in (
        ("paid_pence = 200001 WHERE id = 'i1'", "ck_invoices_paid_within_gross"),
        ("paid_pence = -1 WHERE id = 'c1'", "ck_invoices_paid_within_gross"),
        ("status = 'void' WHERE id = 'i1'", "ck_invoices_nothing_paid_on_void"),
        ("paid_pence = 100 WHERE id = 'i2'", "ck_invoices_nothing_paid_on_void"),
    ):
        with pytest.raises(IntegrityError, match=rule):
            async with engine.begin() as connection:
                await connection.execute(text(f"UPDATE invoices SET {change}"))
    async with engine.begin() as connection:  # paying in full is still fine
        await connection.execute(
            text("UPDATE invoices SET paid_pence = 200000, status = 'paid' WHERE id = 'i1'")
        )


async def test_an_upgrade_over_money_on_a_void_invoice_stops_and_names_it(
    engine: AsyncEngine,
) -> None:
    await books_at_0002(engine, void_paid=10_000)

    with pytest.raises(RuntimeError, match=r"money on a void invoice.*: INV-000002$"):
        await migrations.upgrade(engine, MIGRATIONS)

    assert await migrations.current_revision(engine) == "0002"
    assert await count(engine, "payments") == 1
