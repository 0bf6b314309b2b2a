"""A member's account read from the store: its statement as at a day.

Only what had happened by that day counts: documents issued, payments received
and credits set against invoices on or before it. The rules (order, running
balance, ageing) are ``domain.accounts``'.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.subscriptions.domain.accounts import Entry, aged, statement
from services.subscriptions.domain.billing import balance
from services.subscriptions.store import (
    CreditAllocation,
    Invoice,
    InvoiceLine,
    Member,
    Membership,
    Payment,
    display_number,
)


async def statement_of(
    session: AsyncSession, member: Member, membership: Membership, on: date
) -> dict[str, Any]:
    """``member``'s statement of account as at ``on``, as ShowStatement answers it."""
    documents = list(
        await session.scalars(
            select(Invoice)
            .where(
                Invoice.member_id == member.id,
                Invoice.status != "void",
                Invoice.issued_on <= on,
            )
            .order_by(Invoice.issued_on, Invoice.series, Invoice.number)
        )
    )
    by_id = {document.id: document for document in documents}
    descriptions = await _descriptions(session, list(by_id))
    payments = await session.execute(
        select(Payment.invoice_id, Payment.amount_pence, Payment.received_on, Payment.reference)
        .join(Invoice, Invoice.id == Payment.invoice_id)
        .where(Invoice.member_id == member.id, Payment.received_on <= on)
    )
    paid: dict[str, int] = {}
    entries = []
    for invoice_id, amount, received_on, reference in payments:
        if invoice_id not in by_id:  # issued after ``on``: cannot happen, but never count it
            continue
        paid[invoice_id] = paid.get(invoice_id, 0) + amount
        entries.append(
            Entry(received_on, "payment", by_id[invoice_id].display_number, "", amount, reference)
        )
    allocations = await session.execute(
        select(
            CreditAllocation.invoice_id,
            CreditAllocation.credit_note_id,
            CreditAllocation.amount_pence,
        ).where(CreditAllocation.invoice_id.in_(list(by_id)), CreditAllocation.allocated_on <= on)
    )
    credited: dict[str, int] = {}  # by invoice
    allocated: dict[str, int] = {}  # by credit note
    for invoice_id, credit_note_id, amount in allocations:
        credited[invoice_id] = credited.get(invoice_id, 0) + amount
        allocated[credit_note_id] = allocated.get(credit_note_id, 0) + amount
    credits_invoice = {
        document.credits_invoice_id: "" for document in documents if document.credits_invoice_id
    }
    if credits_invoice:
        for series, number, invoice_id in await session.execute(
            select(Invoice.series, Invoice.number, Invoice.id).where(
                Invoice.id.in_(list(credits_invoice))
            )
        ):
            credits_invoice[invoice_id] = display_number(series, number)
    debts: list[tuple[date, int]] = []
    due_on: dict[str, str | None] = {}
    for document in documents:
        number = document.display_number
        if document.kind == "invoice":
            owed = balance(
                document.gross_pence, paid.get(document.id, 0), credited.get(document.id, 0)
            )
            if document.due_on is not None:
                debts.append((document.due_on, owed))
            due_on[number] = document.due_on.isoformat() if document.due_on else None
            reference = None
        else:
            reference = credits_invoice.get(document.credits_invoice_id or "") or None
        entries.append(
            Entry(
                document.issued_on,
                document.kind,  # type: ignore[arg-type]
                number,
                descriptions.get(document.id, ""),
                document.gross_pence,
                reference,
            )
        )
    account = statement(entries)
    credit_held = sum(
        max(d.gross_pence - allocated.get(d.id, 0), 0) for d in documents if d.kind == "credit_note"
    )
    by_age = aged(debts, on)
    return {
        "member_id": member.id,
        "name": member.name,
        "billing_email": membership.billing_email,
        "billing_address": membership.billing_address,
        "purchase_order": member.reference,
        "on": on.isoformat(),
        "entries": [
            {
                "on": entry.on.isoformat(),
                "kind": entry.kind,
                "number": entry.number,
                "description": entry.description,
                "reference": entry.reference,
                "due_on": due_on.get(entry.number) if entry.kind == "invoice" else None,
                "debit": entry.debit,
                "credit": entry.credit,
                "balance": running,
            }
            for entry, running in account.lines
        ],
        "invoiced": account.invoiced,
        "credited": account.credited,
        "paid": account.paid,
        "balance": account.balance,
        # What is owed on the invoices one by one, and credit not yet set against any:
        # the balance is the one less the other.
        "outstanding": sum(by_age.values()),
        "credit_held": credit_held,
        "overdue": sum(amount for bucket, amount in by_age.items() if bucket != "not_due"),
        "aged": by_age,
    }


async def _descriptions(session: AsyncSession, document_ids: list[str]) -> dict[str, str]:
    """Each document's lines' descriptions, as one line of text."""
    lines: dict[str, list[str]] = {}
    if document_ids:
        for invoice_id, description in await session.execute(
            select(InvoiceLine.invoice_id, InvoiceLine.description)
            .where(InvoiceLine.invoice_id.in_(document_ids))
            .order_by(InvoiceLine.invoice_id, InvoiceLine.position)
        ):
            lines.setdefault(invoice_id, []).append(description)
    return {invoice_id: "; ".join(texts) for invoice_id, texts in lines.items()}
