"""`vestry invoices export`: a year's books as an accounting package's import files.

The subscriptions service answers the rows a page at a time (``ExportBooks``); this
writes them as CSV with Python's csv module. Xero takes up to 500 invoices in one
sales invoice import and 1,000 lines in one bank statement import, so a larger year
is written as several files: FILE, then FILE-2, FILE-3 … (and FILE-payments,
FILE-payments-2 …), none splitting a document.
"""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

from vestry.cli_subscriptions import build, invoices_app
from vestry.connection import connected
from vestry.terminal import console, emit, fail, options_of, run

# The most Xero takes in one import file.
MOST_DOCUMENTS = 500
MOST_STATEMENT_LINES = 1000


@invoices_app.command("export")
def invoices_export(
    ctx: typer.Context,
    year: Annotated[int, typer.Option(help="Financial year: 2026 is 1 Apr 2026 – 31 Mar 2027.")],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="The sales invoices file; the payments go beside it as NAME-payments.csv.",
        ),
    ],
    format: Annotated[str, typer.Option("--format", help="The accounting package: xero.")] = "xero",
) -> None:
    """Write a year's invoices and credit notes (Xero's sales invoice import) and the
    payments against them (Xero's bank statement import) as CSV."""
    from contracts.subscriptions_v1 import ExportBooks
    from kernel.commands import request

    options = options_of(ctx)
    if format != "xero":
        fail(f"--format is xero, not {format!r}", code=2, options=options)
    build(options, ExportBooks, year=year, format=format, records="invoices")

    async def fetch() -> dict[str, tuple[list[str], list[list[str]]]]:
        found: dict[str, tuple[list[str], list[list[str]]]] = {}
        async with connected(options.nats) as nc:
            for records in ("invoices", "payments"):
                rows: list[list[str]] = []
                after = None
                while True:
                    page = await request(
                        nc,
                        ExportBooks(year=year, format="xero", records=records, after=after),
                        timeout=30,
                    )
                    rows += page["rows"]
                    after = page["next"]
                    if after is None:
                        break
                found[records] = (page["columns"], rows)
        return found

    books = run(options, fetch())
    sales_columns, sales = books["invoices"]
    statement_columns, payments = books["payments"]
    number_at = sales_columns.index("*InvoiceNumber")
    amount_at = sales_columns.index("*UnitAmount")
    documents = _by_document(sales, number_at)
    files = _write(output, sales_columns, documents, MOST_DOCUMENTS)
    files += _write(
        output.with_name(f"{output.stem}-payments{output.suffix or '.csv'}"),
        statement_columns,
        [[row] for row in payments],
        MOST_STATEMENT_LINES,
    )
    credit_notes = [rows for rows in documents if Decimal(rows[0][amount_at]) < 0]
    summary: dict[str, Any] = {
        "year": year,
        "format": format,
        "files": [str(path) for path in files],
        "invoices": len(documents) - len(credit_notes),
        "credit_notes": len(credit_notes),
        "lines": len(sales),
        "net": str(sum((Decimal(r[amount_at]) for r in sales), Decimal("0.00"))),
        "payments": len(payments),
        "paid": str(sum((Decimal(r[1]) for r in payments), Decimal("0.00"))),
    }

    def render() -> None:
        console.print(
            f"{summary['invoices']} invoices and {summary['credit_notes']} credit notes "
            f"({summary['lines']} lines, net £{Decimal(summary['net']):,.2f}) and "
            f"{summary['payments']} payments (£{Decimal(summary['paid']):,.2f}) for {year}:"
        )
        for path in files:
            console.print(f"  {path}")
        console.print(
            "In Xero: Invoices › Import (amounts are tax exclusive), and each bank "
            "account's Import a statement for the payments."
        )

    emit(options, summary, render)


def _by_document(rows: list[list[str]], number_at: int) -> list[list[list[str]]]:
    """Rows grouped by document, in order: a document's lines are never split."""
    documents: list[list[list[str]]] = []
    for row in rows:
        if documents and documents[-1][0][number_at] == row[number_at]:
            documents[-1].append(row)
        else:
            documents.append([row])
    return documents


def _write(path: Path, columns: list[str], groups: list[list[list[str]]], most: int) -> list[Path]:
    """``groups`` of rows written under ``columns`` in files of at most ``most`` groups:
    ``path``, then ``path``-2 … when there are more. Always at least one file."""
    written = []
    for index, first in enumerate(range(0, max(len(groups), 1), most)):
        target = path if index == 0 else path.with_name(f"{path.stem}-{index + 1}{path.suffix}")
        with target.open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(columns)
            for group in groups[first : first + most]:
                writer.writerows(group)
        written.append(target)
    return written
