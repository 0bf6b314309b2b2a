"""`vestry invoices export --format xero`: the reference year's invoices, credit notes and
payments as Xero's import files, read back with Python's csv module (not the project's
own code): Xero's columns, its required ones filled, its date and amount formats, and
totals that agree with the year's summary."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import AsyncIterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from typer.testing import CliRunner

from contracts.subscriptions_v1 import (
    ChangeBillingContact,
    ChangeTier,
    ExportBooks,
    InvoiceSummary,
    ListInvoices,
    VoidInvoice,
)
from kernel.commands import CommandFailed, request
from kernel.runtime import Service
from kernel.settings import Settings
from tests.finance_support import Clock, pay
from tests.subscriptions_helpers import enrol_reference, run_to_end, subscriptions
from vestry import cli_exports
from vestry.cli import app

YEAR = 2026
# Xero's sales invoice import template, and its bank statement import template.
SALES_HEADER = [
    "*ContactName",
    "EmailAddress",
    "POAddressLine1",
    "POAddressLine2",
    "POAddressLine3",
    "POAddressLine4",
    "POCity",
    "PORegion",
    "POPostalCode",
    "POCountry",
    "*InvoiceNumber",
    "Reference",
    "*InvoiceDate",
    "*DueDate",
    "InventoryItemCode",
    "*Description",
    "*Quantity",
    "*UnitAmount",
    "Discount",
    "*AccountCode",
    "*TaxType",
    "TrackingName1",
    "TrackingOption1",
    "TrackingName2",
    "TrackingOption2",
    "Currency",
    "BrandingTheme",
]
STATEMENT_HEADER = ["*Date", "*Amount", "Payee", "Description", "Reference", "Cheque Number"]

runner = CliRunner()


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[Service]:
    clock = Clock(date(YEAR, 4, 1))
    async with subscriptions(settings, clock=clock) as running:
        yield running


async def the_reference_year(nc: Client, service: Service) -> dict[str, Any]:
    """45 members billed; a tier change dated 1 March (a credit note and an invoice); one
    invoice void; two paid in full, one in part; an address with a postcode."""
    await enrol_reference(nc, date(YEAR, 4, 1))
    await request(
        nc,
        ChangeBillingContact(
            member="Bury Council",
            billing_address="Town Hall, Knowsley Street, Bury BL9 0SW",
            purchase_order="PO-2026-0412",
        ),
    )
    await run_to_end(nc, YEAR, issued_on=date(YEAR, 4, 1))
    invoices = (await request(nc, ListInvoices(year=YEAR)))["invoices"]
    by_name = {i["billed_name"]: i for i in invoices}
    upper = next(i for i in invoices if i["tier"] == "upper-tier")
    await request(
        nc, ChangeTier(member=upper["billed_name"], tier="district", effective_on=date(2027, 3, 1))
    )
    district = [i for i in invoices if i["tier"] == "district"]
    await request(nc, pay(by_name["Bury Council"]["number"], 200_000, date(YEAR, 4, 20), "BACS"))
    await request(nc, pay(district[1]["number"], 200_000, date(YEAR, 5, 2)))
    await request(nc, pay(district[2]["number"], 50_000, date(YEAR, 5, 3)))
    await request(nc, VoidInvoice(invoice=district[3]["number"], reason="Joined in error"))
    return await request(nc, InvoiceSummary(year=YEAR, on=date(YEAR, 6, 1)))


async def export(settings: Settings, *args: str) -> tuple[int, Any, str]:
    result = await asyncio.to_thread(
        runner.invoke,
        app,
        ["--nats", settings.nats_url, "--json", "invoices", "export", "--format", "xero", *args],
    )
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError:
        data = None
    return result.exit_code, data, result.output


def read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


def pence(amount: str) -> int:
    assert amount == f"{Decimal(amount):.2f}", f"{amount!r} is not a plain amount"
    return int(Decimal(amount) * 100)


async def test_the_years_books_import_into_xero_and_agree_with_its_summary(
    settings: Settings, service: Service, nc: Client, tmp_path: Path
) -> None:
    summary = await the_reference_year(nc, service)
    totals = summary["totals"]
    target = tmp_path / "xero-2026.csv"

    code, answer, output = await export(settings, "--year", str(YEAR), "-o", str(target))

    assert code == 0, output
    payments_file = tmp_path / "xero-2026-payments.csv"
    assert answer["files"] == [str(target), str(payments_file)]
    header, rows = read(target)
    assert header == SALES_HEADER
    required = [column for column in header if column.startswith("*")]
    for row in rows:
        assert all(row[column].strip() for column in required), row
        for column in ("*InvoiceDate", "*DueDate"):
            datetime.strptime(row[column], "%d/%m/%Y")
        assert (row["*Quantity"], row["*AccountCode"], row["Currency"]) == ("1", "200", "GBP")
        assert row["*TaxType"] == "No VAT"  # subscriptions between public bodies
    documents: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        documents.setdefault(row["*InvoiceNumber"], []).append(row)
    invoices = {n: r for n, r in documents.items() if n.startswith("INV-")}
    credit_notes = {n: r for n, r in documents.items() if n.startswith("CN-")}
    assert len(invoices) == totals["invoices"] == 45  # 44 billed, the void one out, 1 re-billed
    assert len(credit_notes) == 1
    net = sum(pence(row["*UnitAmount"]) for r in invoices.values() for row in r)
    credited = -sum(pence(row["*UnitAmount"]) for r in credit_notes.values() for row in r)
    assert (net, net) == (totals["net"], totals["billed"])  # no VAT: billed is net
    assert credited == totals["credited"] > 0
    assert all(pence(row["*UnitAmount"]) < 0 for r in credit_notes.values() for row in r)
    (note,) = credit_notes.values()
    assert note[0]["Reference"].startswith("Credits INV-")
    (bury,) = [r[0] for r in invoices.values() if r[0]["*ContactName"] == "Bury Council"]
    assert (bury["POAddressLine1"], bury["POAddressLine2"]) == ("Town Hall", "Knowsley Street")
    assert (bury["POCity"], bury["POPostalCode"], bury["POCountry"]) == ("Bury", "BL9 0SW", "GB")
    assert bury["Reference"] == "PO-2026-0412"
    assert bury["EmailAddress"].endswith(".example.gov.uk")

    header, lines = read(payments_file)
    assert header == STATEMENT_HEADER
    assert len(lines) == answer["payments"] == 3
    assert sum(pence(line["*Amount"]) for line in lines) == totals["paid"]
    assert [line["*Date"] for line in lines] == ["20/04/2026", "02/05/2026", "03/05/2026"]
    assert all(line["Reference"] in invoices for line in lines)
    assert lines[0]["Payee"] == "Bury Council"
    assert (answer["invoices"], answer["credit_notes"], answer["lines"]) == (
        45,
        1,
        len(rows),
    )


async def test_pages_join_up_to_the_whole_and_a_large_year_is_split_between_documents(
    settings: Settings, service: Service, nc: Client, tmp_path: Path, monkeypatch: Any
) -> None:
    await the_reference_year(nc, service)
    whole = await request(nc, ExportBooks(year=YEAR, records="invoices", limit=1000))
    assert whole["next"] is None
    rows, after = [], None
    while True:
        page = await request(nc, ExportBooks(year=YEAR, records="invoices", after=after, limit=7))
        rows += page["rows"]
        after = page["next"]
        if after is None:
            break
    assert rows == whole["rows"]
    with pytest.raises(CommandFailed) as refused:
        await request(nc, ExportBooks(year=YEAR, records="invoices", after="not-a-number"))
    assert (refused.value.error.code, refused.value.error.field) == ("invalid", "after")

    monkeypatch.setattr(cli_exports, "MOST_DOCUMENTS", 20)
    monkeypatch.setattr(cli_exports, "MOST_STATEMENT_LINES", 2)
    code, answer, output = await export(
        settings, "--year", str(YEAR), "-o", str(tmp_path / "b.csv")
    )
    assert code == 0, output
    assert [Path(f).name for f in answer["files"]] == [
        "b.csv",
        "b-2.csv",
        "b-3.csv",
        "b-payments.csv",
        "b-payments-2.csv",
    ]
    seen: list[str] = []
    for name in ("b.csv", "b-2.csv", "b-3.csv"):
        _, part = read(tmp_path / name)
        numbers = list(dict.fromkeys(row["*InvoiceNumber"] for row in part))
        assert len(numbers) <= 20 and not set(numbers) & set(seen)  # no document split
        seen += numbers
    assert len(seen) == 46


async def test_another_format_is_refused(settings: Settings, tmp_path: Path) -> None:
    result = await asyncio.to_thread(
        runner.invoke,
        app,
        [
            "--nats",
            settings.nats_url,
            "invoices",
            "export",
            "--format",
            "sage",
            "--year",
            "2026",
            "-o",
            str(tmp_path / "x.csv"),
        ],
    )
    assert result.exit_code == 2 and "xero" in result.output
    assert not (tmp_path / "x.csv").exists()
