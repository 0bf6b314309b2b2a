"""Upgrading a subscriptions store whose booking lines name their bookers in their
descriptions (0006) to 0007, on SQLite and on PostgreSQL: the name moves to a column of
its own, the description keeps the rest, and the amounts stay; a line billed to the
booker themselves takes the document's email as the booker's, and erasure then finds
an older line billed to a member by the name its booker has booked under since."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from kernel import migrations
from kernel.settings import Settings
from kernel.store import create_engine
from services.subscriptions.app import MIGRATIONS
from services.subscriptions.domain.people import Person
from services.subscriptions.people import erase


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
    "INSERT INTO invoices (id, kind, series, number, purpose, year, member_id, billed_name,"
    " billing_email, issued_on, net_pence, vat_pence, gross_pence, paid_pence, status)"
    " VALUES (:id, :kind, :series, :number, :purpose, 2026, :member, :name, :email,"
    " '2026-04-01', 15000, 3000, 18000, 0, 'issued')"
)
LINE = (
    "INSERT INTO invoice_lines (invoice_id, position, description, months, net_pence,"
    " vat_basis_points, vat_pence) VALUES (:invoice, 1, :description, :months, 15000, 2000, 3000)"
)
WORKSHOP = "Lean workshop, 10 Jun 2026"


async def books_at_0006(engine: AsyncEngine) -> None:
    """Ann's own booking and its credit note, Jo's booking billed to Bury, and a yearly
    subscription, as 0006 wrote them."""
    await migrations.upgrade(engine, MIGRATIONS, revision="0006")
    documents = [
        ("i1", "invoice", "INV", 1, "booking", None, "Ann Smith", "Ann.Smith@example.org"),
        (
            "c1",
            "credit_note",
            "CN",
            1,
            "booking_refund",
            None,
            "Ann Smith",
            "Ann.Smith@example.org",
        ),
        ("i2", "invoice", "INV", 2, "booking", "m-1", "Bury Council", "finance@bury.example"),
        ("i3", "invoice", "INV", 3, "recurring", "m-1", "Bury Council", "finance@bury.example"),
    ]
    keys = ("id", "kind", "series", "number", "purpose", "member", "name", "email")
    lines = [
        ("i1", f"{WORKSHOP}: place for Ann Smith (booking BK-1)", 0),
        ("c1", f"Cancelled: {WORKSHOP}: place for Ann Smith (booking BK-1)", 0),
        ("i2", f"{WORKSHOP}: place for Jo Bloggs (booking BK-2)", 0),
        ("i3", "District council subscription, 1 Apr 2026 – 31 Mar 2027", 12),
    ]
    async with engine.begin() as connection:
        for document in documents:
            await connection.execute(text(INVOICE), dict(zip(keys, document, strict=True)))
        for invoice, description, months in lines:
            await connection.execute(
                text(LINE), {"invoice": invoice, "description": description, "months": months}
            )


async def test_booking_lines_name_their_booker_apart_from_the_description_after_upgrade(
    engine: AsyncEngine,
) -> None:
    await books_at_0006(engine)
    await migrations.upgrade(engine, MIGRATIONS)
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT invoice_id, description, booker_name, booker_email, net_pence,"
                    " vat_pence FROM invoice_lines ORDER BY invoice_id"
                )
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        (
            "c1",
            f"Cancelled: {WORKSHOP}: a place (booking BK-1)",
            "Ann Smith",
            "ann.smith@example.org",
            15000,
            3000,
        ),
        (
            "i1",
            f"{WORKSHOP}: a place (booking BK-1)",
            "Ann Smith",
            "ann.smith@example.org",
            15000,
            3000,
        ),
        # Billed to the member: the booker's email was never kept.
        ("i2", f"{WORKSHOP}: a place (booking BK-2)", "Jo Bloggs", None, 15000, 3000),
        ("i3", "District council subscription, 1 Apr 2026 – 31 Mar 2027", None, None, 15000, 3000),
    ]


async def test_erasure_finds_an_older_member_line_by_the_name_booked_under_since(
    engine: AsyncEngine,
) -> None:
    await books_at_0006(engine)
    await migrations.upgrade(engine, MIGRATIONS)
    jo = "jo.bloggs@bury.example"
    async with engine.begin() as connection:  # Jo books again, after the upgrade
        await connection.execute(
            text(INVOICE),
            {
                "id": "i4",
                "kind": "invoice",
                "series": "INV",
                "number": 4,
                "purpose": "booking",
                "member": "m-1",
                "name": "Bury Council",
                "email": "finance@bury.example",
            },
        )
        await connection.execute(
            text(
                "INSERT INTO invoice_lines (invoice_id, position, description, months,"
                " net_pence, vat_basis_points, vat_pence, booker_name, booker_email)"
                " VALUES ('i4', 1, 'Forum: a place (booking BK-4)', 0, 15000, 2000, 3000,"
                " 'Jo Bloggs', :email)"
            ),
            {"email": jo},
        )
    before = await money(engine)
    async with async_sessionmaker(engine)() as session, session.begin():
        erased, kept = await erase(session, Person.asking(jo))
    assert (erased, kept) == ({"booker_names": 2}, {"invoices": 2})
    async with engine.connect() as connection:
        named = (
            await connection.execute(
                text("SELECT invoice_id FROM invoice_lines WHERE booker_name IS NOT NULL")
            )
        ).scalars()
        assert sorted(named) == ["c1", "i1"]  # Ann's, not Jo's
    assert await money(engine) == before


async def money(engine: AsyncEngine) -> list[tuple[str, int, int, int]]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT id, net_pence, vat_pence, gross_pence FROM invoices ORDER BY id")
        )
        return [tuple(row) for row in rows]
