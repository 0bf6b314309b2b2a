"""Invoices, credit notes and statements as documents, read back by poppler; a member's
account and debt by age, without a broker or a store."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.subscriptions.document import (
    Supplier,
    invoice_html,
    pdf_identifier,
    print_pdf,
    statement_html,
)
from services.subscriptions.domain.accounts import AGE_BUCKETS, Entry, age_bucket, aged, statement
from tests.pdf_support import pdf_info, pdf_rows, pdf_text

SUPPLIER = Supplier(
    name="North West Improvement Partnership",
    address_lines=("Town Hall", "Albert Square", "Manchester M60 2LA"),
    vat_number="GB 123 4567 89",
    payment_instructions="Pay by BACS to sort code 40-11-62, account 21436587, quoting the "
    "invoice number.",
)


def invoice(**changes: Any) -> dict[str, Any]:
    """An invoice as ShowInvoice answers it: a subscription at 0% and a course place at 20%."""
    lines = [
        {
            "description": "Upper-tier subscription, 1 Apr 2026 – 31 Mar 2027",
            "booker": None,
            "months": 12,
            "net": 900_000,
            "vat_rate": 0.0,
            "vat": 0,
            "gross": 900_000,
        },
        {
            "description": "Lean in local government, 3 Mar 2027: a place (booking BK7Q2)",
            "booker": "Cat Cole",
            "months": 0,
            "net": 15_000,
            "vat_rate": 20.0,
            "vat": 3_000,
            "gross": 18_000,
        },
    ]
    return {
        "number": "INV-000017",
        "kind": "invoice",
        "purpose": "recurring",
        "year": 2026,
        "billed_name": "Bury Council",
        "billing_email": "accounts@bury.example.gov.uk",
        "billing_address": "Town Hall, Knowsley Street, Bury BL9 0SW",
        "purchase_order": "PO-2026-17",
        "issued_on": "2026-04-01",
        "due_on": "2026-05-01",
        "net": 915_000,
        "vat": 3_000,
        "gross": 918_000,
        "status": "issued",
        "credits_invoice": None,
        "replaces_invoice": None,
        "allocations": [],
        "unallocated": 0,
        "lines": lines,
        **changes,
    }


def printed(document: dict[str, Any], supplier: Supplier = SUPPLIER) -> bytes:
    """The document's PDF, printed afresh (not from the cache)."""
    html = invoice_html(document, supplier)
    return print_pdf.__wrapped__(html, pdf_identifier(document["kind"], document["number"]))


# The documents


def test_an_invoice_pdf_shows_what_a_uk_vat_invoice_must_and_how_to_pay() -> None:
    pdf = printed(invoice())
    text, rows = pdf_text(pdf), pdf_rows(pdf)
    for shown in (
        # the supplier: name, address, VAT registration number
        "North West Improvement Partnership",
        "Town Hall Albert Square Manchester M60 2LA",
        "VAT registration number GB 123 4567 89",
        # the customer: name and address
        "Bury Council Town Hall Knowsley Street Bury BL9 0SW",
        "Your purchase order: PO-2026-17",
        # the invoice: its number, date and tax point
        "Invoice number INV-000017 Invoice date 1 April 2026 Tax point 1 April 2026",
        "Payment due 1 May 2026",
        # how to pay
        "Pay by BACS to sort code 40-11-62, account 21436587, quoting the invoice number.",
        "Please quote INV-000017 and pay by 1 May 2026.",
    ):
        assert shown in text, shown
    for row in (
        # each line: description, net, VAT rate, VAT, total
        "Upper-tier subscription, 1 Apr 2026 – 31 Mar 2027 £9,000.00 0% £0.00 £9,000.00",
        "Lean in local government, 3 Mar 2027: a place £150.00 20% £30.00 £180.00",
        "Booked for Cat Cole",
        # the totals: net, VAT, to pay
        "Total net £9,150.00",
        "Total VAT £30.00",
        "Total to pay £9,180.00",
        # VAT by rate
        "20% £150.00 £30.00",
        "0% £9,000.00 £0.00",
    ):
        assert row in rows, row


def test_the_same_document_prints_the_same_bytes_dated_by_itself() -> None:
    first, again = printed(invoice()), printed(invoice())
    assert first == again
    info = pdf_info(first)
    assert (info["CreationDate"], info["ModDate"]) == (
        "2026-04-01T00:00:00Z",
        "2026-04-01T00:00:00Z",
    )
    assert info["Title"] == "Invoice INV-000017 — North West Improvement Partnership"
    assert b"/ID [(" + pdf_identifier("invoice", "INV-000017") in first
    # Another process (another font cache, another hash seed) prints the same bytes.
    script = (
        "import sys\n"
        "from tests.unit.test_documents import invoice, printed\n"
        "sys.stdout.buffer.write(printed(invoice()))\n"
    )
    elsewhere = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, check=True, timeout=120
    ).stdout
    assert elsewhere == first
    # A different document is different bytes, and names itself.
    other = printed(invoice(number="INV-000018"))
    assert other != first and "INV-000018" in pdf_text(other)


def test_a_supplier_not_registered_for_vat_shows_no_registration_number() -> None:
    unregistered = Supplier(SUPPLIER.name, SUPPLIER.address_lines, None, "Pay by cheque.")
    text = pdf_text(printed(invoice(), unregistered))
    assert "VAT registration" not in text and "Pay by cheque." in text


def test_a_void_invoice_says_so_and_asks_for_no_payment() -> None:
    text = pdf_text(printed(invoice(status="void")))
    assert "Void: this invoice was cancelled and is not to be paid." in text
    assert "How to pay" not in text


def test_a_credit_note_names_the_invoice_its_reason_and_where_the_credit_went() -> None:
    note = invoice(
        number="CN-000003",
        kind="credit_note",
        purpose="tier_change",
        due_on=None,
        credits_invoice="INV-000017",
        allocations=[{"number": "INV-000017", "amount": 100_000, "on": "2026-04-10"}],
        unallocated=350_000,
        net=450_000,
        vat=0,
        gross=450_000,
        lines=[
            {
                "description": "Upper-tier subscription, credit for 6 months from the tier change",
                "booker": None,
                "months": 6,
                "net": 450_000,
                "vat_rate": 0.0,
                "vat": 0,
                "gross": 450_000,
            }
        ],
    )
    pdf = printed(note)
    text, rows = pdf_text(pdf), pdf_rows(pdf)
    for shown in (
        "Credit note CN-000003",
        "Credit note date 1 April 2026 Tax point 1 April 2026",
        "Credits invoice INV-000017",
        "Reason for credit: change of tier",
        "£3,500.00 of this credit is held on your account",
        "You do not need to pay this credit note.",
        "VAT registration number GB 123 4567 89",
    ):
        assert shown in text, shown
    for row in ("Total credited £4,500.00", "Invoice INV-000017, 10 April 2026 £1,000.00"):
        assert row in rows, row
    assert "How to pay" not in text


def test_a_statement_pdf_lists_the_account_and_the_balance_due() -> None:
    account = {
        "member_id": "m-1",
        "name": "Bury Council",
        "billing_email": "accounts@bury.example.gov.uk",
        "billing_address": "Town Hall, Knowsley Street, Bury BL9 0SW",
        "purchase_order": None,
        "on": "2026-09-30",
        "entries": [
            {
                "on": "2026-04-01",
                "kind": "invoice",
                "number": "INV-000017",
                "description": "Upper-tier subscription",
                "reference": None,
                "due_on": "2026-05-01",
                "debit": 900_000,
                "credit": 0,
                "balance": 900_000,
            },
            {
                "on": "2026-04-20",
                "kind": "payment",
                "number": "INV-000017",
                "description": "",
                "reference": "BACS 123",
                "due_on": None,
                "debit": 0,
                "credit": 100_000,
                "balance": 800_000,
            },
        ],
        "invoiced": 900_000,
        "credited": 0,
        "paid": 100_000,
        "balance": 800_000,
        "outstanding": 800_000,
        "credit_held": 0,
        "overdue": 800_000,
        "aged": {**dict.fromkeys(AGE_BUCKETS, 0), "over_90": 800_000},
    }
    html = statement_html(account, SUPPLIER)
    pdf = print_pdf.__wrapped__(html, pdf_identifier("statement", "m-1", "2026-09-30"))
    text, rows = pdf_text(pdf), pdf_rows(pdf)
    for shown in (
        "Statement of account",
        "Statement date 30 September 2026",
        "Pay by BACS to sort code 40-11-62",
    ):
        assert shown in text, shown
    for row in (
        "1 April 2026 Invoice INV-000017: Upper-tier £9,000.00 £9,000.00",
        "20 April 2026 Payment for invoice INV-000017, £1,000.00 £8,000.00",
        "Balance due £8,000.00",
        "More than 90 days overdue £8,000.00",
        "Outstanding on invoices £8,000.00",
    ):
        assert row in rows, row
    assert pdf_info(pdf)["CreationDate"] == "2026-09-30T00:00:00Z"


# The account, and debt by age


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["invoice", "credit_note", "payment"]),
            st.integers(min_value=0, max_value=400),  # days into the year
            st.integers(min_value=1, max_value=10_000_000),
        ),
        max_size=30,
    )
)
def test_a_statements_balance_is_its_documents_less_its_payments(
    moves: list[tuple[str, int, int]],
) -> None:
    start = date(2026, 4, 1)
    entries = [
        Entry(start + timedelta(days=day), kind, f"{kind}-{n}", "", pence)  # type: ignore[arg-type]
        for n, (kind, day, pence) in enumerate(moves)
    ]
    account = statement(entries)
    charged = sum(p for kind, _, p in moves if kind == "invoice")
    credited = sum(p for kind, _, p in moves if kind == "credit_note")
    paid = sum(p for kind, _, p in moves if kind == "payment")
    assert account.balance == charged - credited - paid
    assert (account.lines[-1][1] if account.lines else 0) == account.balance
    days = [entry.on for entry, _ in account.lines]
    assert days == sorted(days)
    running = 0
    for entry, balance in account.lines:
        running += entry.debit - entry.credit
        assert balance == running


def test_on_one_day_the_charge_comes_before_the_credit_and_the_payment() -> None:
    day = date(2026, 4, 1)
    account = statement(
        [
            Entry(day, "payment", "INV-000001", "", 500),
            Entry(day, "credit_note", "CN-000001", "", 200),
            Entry(day, "invoice", "INV-000001", "", 1_000),
        ]
    )
    assert [(e.kind, balance) for e, balance in account.lines] == [
        ("invoice", 1_000),
        ("credit_note", 800),
        ("payment", 300),
    ]


def test_debt_is_aged_by_days_past_its_due_date() -> None:
    due = date(2026, 5, 1)
    ages = {days: age_bucket(due, due + timedelta(days=days)) for days in range(-1, 93)}
    assert {ages[d] for d in (-1, 0)} == {"not_due"}
    assert {ages[d] for d in (1, 30)} == {"1-30"}
    assert {ages[d] for d in (31, 60)} == {"31-60"}
    assert {ages[d] for d in (61, 90)} == {"61-90"}
    assert {ages[d] for d in (91, 92)} == {"over_90"}


@given(
    st.lists(
        st.tuples(st.integers(min_value=-200, max_value=200), st.integers(-1000, 1_000_000)),
        max_size=40,
    ),
)
def test_aged_buckets_add_up_to_what_is_owed(debts: list[tuple[int, int]]) -> None:
    on = date(2026, 10, 1)
    by_age = aged(((on - timedelta(days=d), pence) for d, pence in debts), on)
    assert tuple(by_age) == AGE_BUCKETS
    assert sum(by_age.values()) == sum(pence for _, pence in debts if pence > 0)
