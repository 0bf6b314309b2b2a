"""The books for an accounting package: a year's documents and payments read from the
store a page at a time, in the package's import format (``domain.xero``).

Pages are keyed, not counted: each ends at a document number (or a payment's day and
id) and the next starts after it, so a document issued while an export runs never
shifts a page, and never appears twice.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select, tuple_

from contracts.subscriptions_v1 import ExportBooks
from kernel.commands import CommandContext, Refused
from services.subscriptions.domain import xero
from services.subscriptions.settings import BillingSettings
from services.subscriptions.store import Invoice, InvoiceLine, Payment, display_number, parse_number


def coding_of(settings: BillingSettings) -> xero.Coding:
    return xero.Coding(
        account_code=settings.xero_account_code, no_vat_tax_type=settings.xero_no_vat_tax_type
    )


async def export_books(
    command: ExportBooks, ctx: CommandContext, *, coding: xero.Coding
) -> dict[str, Any]:
    """One page of the year's invoices and credit notes, or of the payments against them."""
    if command.records == "invoices":
        rows, last, count = await _documents(ctx, command, coding)
        columns = xero.SALES_COLUMNS
    else:
        rows, last, count = await _payments(ctx, command)
        columns = xero.STATEMENT_COLUMNS
    return {
        "year": command.year,
        "format": command.format,
        "records": command.records,
        "columns": list(columns),
        "rows": rows,
        "count": count,
        "next": last if count == command.limit else None,
    }


async def _documents(
    ctx: CommandContext, command: ExportBooks, coding: xero.Coding
) -> tuple[list[list[str]], str | None, int]:
    query = (
        select(Invoice)
        .where(Invoice.year == command.year, Invoice.status != "void")
        .order_by(Invoice.series, Invoice.number)
        .limit(command.limit)
    )
    if command.after is not None:
        after = parse_number(command.after)
        if after is None or display_number(*after) != command.after:
            raise Refused(
                "invalid", f"{command.after!r} is not where a page ended", "after"
            ) from None
        query = query.where(tuple_(Invoice.series, Invoice.number) > after)
    documents = list(await ctx.session.scalars(query))
    ids = [document.id for document in documents]
    lines: dict[str, list[tuple[str, int, int]]] = {}
    for first in range(0, len(ids), 500):
        for invoice_id, description, net, basis_points in await ctx.session.execute(
            select(
                InvoiceLine.invoice_id,
                InvoiceLine.description,
                InvoiceLine.net_pence,
                InvoiceLine.vat_basis_points,
            )
            .where(InvoiceLine.invoice_id.in_(ids[first : first + 500]))
            .order_by(InvoiceLine.invoice_id, InvoiceLine.position)
        ):
            lines.setdefault(invoice_id, []).append((description, net, basis_points))
    credited = {
        invoice_id: display_number(series, number)
        for invoice_id, series, number in await ctx.session.execute(
            select(Invoice.id, Invoice.series, Invoice.number).where(
                Invoice.id.in_({d.credits_invoice_id for d in documents if d.credits_invoice_id})
            )
        )
    }
    rows = [
        row
        for document in documents
        for row in xero.sales_rows(
            xero.Document(
                kind=document.kind,
                number=document.display_number,
                billed_name=document.billed_name,
                billing_email=document.billing_email,
                billing_address=document.billing_address,
                reference=(
                    f"Credits {credited[document.credits_invoice_id]}"
                    if document.credits_invoice_id in credited
                    else document.purchase_order
                ),
                issued_on=document.issued_on,
                due_on=document.due_on,
                lines=tuple(lines.get(document.id, ())),
            ),
            coding,
        )
    ]
    last = documents[-1].display_number if documents else None
    return rows, last, len(documents)


async def _payments(
    ctx: CommandContext, command: ExportBooks
) -> tuple[list[list[str]], str | None, int]:
    query = (
        select(Payment, Invoice.series, Invoice.number, Invoice.billed_name)
        .join(Invoice, Invoice.id == Payment.invoice_id)
        .where(Invoice.year == command.year)
        .order_by(Payment.received_on, Payment.id)
        .limit(command.limit)
    )
    if command.after is not None:
        on, _, payment_id = command.after.partition("|")
        try:
            after = (date.fromisoformat(on), payment_id)
        except ValueError:
            raise Refused(
                "invalid", f"{command.after!r} is not where a page ended", "after"
            ) from None
        query = query.where(tuple_(Payment.received_on, Payment.id) > after)
    found = list(await ctx.session.execute(query))
    rows = [
        xero.statement_row(
            received_on=payment.received_on,
            amount_pence=payment.amount_pence,
            payee=billed_name,
            number=display_number(series, number),
            by_card=payment.provider_payment_id is not None,
        )
        for payment, series, number, billed_name in found
    ]
    last = f"{found[-1][0].received_on.isoformat()}|{found[-1][0].id}" if found else None
    return rows, last, len(found)
