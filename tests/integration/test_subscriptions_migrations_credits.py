"""Upgrading a subscriptions store that already holds credit notes, on SQLite and
PostgreSQL: each credit note already issued is set against the invoice it credits,
up to what that invoice still owed; the invoices it settles show as settled; and the
store's money rule now counts credits: never more paid and credited than billed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

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
    return ("subscriptions",)


@pytest.fixture
async def engine(store_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(store_settings.database_url("subscriptions"))
    yield engine
    await engine.dispose()


DOCUMENT = (
    "INSERT INTO invoices (id, kind, series, number, purpose, year, membership_id,"
    " billed_name, billing_email, issued_on, net_pence, vat_pence, gross_pence, paid_pence,"
    " status, credits_invoice_id) VALUES (:id, :kind, :series, :number, :purpose, 2008, :id,"
    " 'Bury', 'finance@bury.example.gov.uk', :issued_on, :gross, 0, :gross, :paid, :status,"
    " :credits)"
)


async def books_at_0003(engine: AsyncEngine) -> None:
    """i1: £2,000 with £500 paid, credited £1,000 then £800; i2: £2,000 credited in full;
    i3: £2,000 unpaid and uncredited; a void credit note against i3 counts for nothing."""
    await migrations.upgrade(engine, MIGRATIONS, revision="0003")
    documents = [
        (
            "i1",
            "invoice",
            "INV",
            1,
            "recurring",
            date(2008, 4, 1),
            200_000,
            50_000,
            "part_paid",
            None,
        ),
        ("i2", "invoice", "INV", 2, "recurring", date(2008, 4, 1), 200_000, 0, "issued", None),
        ("i3", "invoice", "INV", 3, "recurring", date(2008, 4, 1), 200_000, 0, "issued", None),
        ("c1", "credit_note", "CN", 1, "tier_change", date(2008, 6, 1), 100_000, 0, "issued", "i1"),
        ("c2", "credit_note", "CN", 2, "tier_change", date(2008, 7, 1), 80_000, 0, "issued", "i1"),
        (
            "c3",
            "credit_note",
            "CN",
            3,
            "leaver_refund",
            date(2008, 7, 2),
            200_000,
            0,
            "issued",
            "i2",
        ),
        ("c4", "credit_note", "CN", 4, "tier_change", date(2008, 7, 3), 10_000, 0, "void", "i3"),
    ]
    keys = (
        "id",
        "kind",
        "series",
        "number",
        "purpose",
        "issued_on",
        "gross",
        "paid",
        "status",
        "credits",
    )
    async with engine.begin() as connection:
        for document in documents:
            await connection.execute(text(DOCUMENT), dict(zip(keys, document, strict=True)))


async def rows(engine: AsyncEngine, query: str) -> list[tuple]:  # type: ignore[type-arg]
    async with engine.connect() as connection:
        return [tuple(row) for row in await connection.execute(text(query))]


async def test_credit_notes_already_issued_are_set_against_their_invoices_on_upgrade(
    engine: AsyncEngine,
) -> None:
    await books_at_0003(engine)
    await migrations.upgrade(engine, MIGRATIONS)

    assert await rows(
        engine,
        "SELECT id, paid_pence, credited_pence, status FROM invoices"
        " WHERE kind = 'invoice' ORDER BY number",
    ) == [
        ("i1", 50_000, 150_000, "paid"),  # £500 paid + £1,500 credited settles £2,000
        ("i2", 0, 200_000, "credited"),
        ("i3", 0, 0, "issued"),
    ]
    # c2 had £800 to give and i1 owed £500 more: £300 of it stays on the account.
    assert await rows(
        engine,
        "SELECT credit_note_id, invoice_id, amount_pence FROM credit_allocations ORDER BY id",
    ) == [("c1", "i1", 100_000), ("c2", "i1", 50_000), ("c3", "i2", 200_000)]


async def test_after_the_upgrade_the_store_refuses_more_paid_and_credited_than_billed(
    engine: AsyncEngine,
) -> None:
    await books_at_0003(engine)
    await migrations.upgrade(engine, MIGRATIONS)

    for change, rule in (
        ("paid_pence = 1 WHERE id = 'i2'", "ck_invoices_paid_within_gross"),
        ("credited_pence = 200001 WHERE id = 'i3'", "ck_invoices_paid_within_gross"),
        ("credited_pence = -1 WHERE id = 'i3'", "ck_invoices_paid_within_gross"),
        ("status = 'void' WHERE id = 'i2'", "ck_invoices_nothing_paid_on_void"),
    ):
        with pytest.raises(IntegrityError, match=rule):
            async with engine.begin() as connection:
                await connection.execute(text(f"UPDATE invoices SET {change}"))
    async with engine.begin() as connection:  # paying and crediting up to the total is fine
        await connection.execute(
            text(
                "UPDATE invoices SET paid_pence = 150000, credited_pence = 50000,"
                " status = 'paid' WHERE id = 'i3'"
            )
        )
