"""Xero's import formats from the books, without I/O: amounts, dates, VAT rate names and
addresses as Xero reads them, and a credit note's amounts below zero."""

from __future__ import annotations

from datetime import date

import pytest

from services.subscriptions.domain.xero import (
    SALES_COLUMNS,
    Coding,
    Document,
    address_fields,
    money,
    sales_rows,
    statement_row,
)


@pytest.mark.parametrize(
    ("pence", "text"), [(200_000, "2000.00"), (5, "0.05"), (-4_550, "-45.50"), (0, "0.00")]
)
def test_amounts_are_plain_decimals_without_symbol_or_separator(pence: int, text: str) -> None:
    assert money(pence) == text


def test_vat_rates_are_named_as_xero_names_them() -> None:
    coding = Coding()
    assert coding.tax_type(2000) == "20% (VAT on Income)"
    assert coding.tax_type(500) == "5% (VAT on Income)"
    assert coding.tax_type(1750) == "17.5% (VAT on Income)"
    assert coding.tax_type(0) == "No VAT"
    assert Coding(no_vat_tax_type="Zero Rated Income").tax_type(0) == "Zero Rated Income"


@pytest.mark.parametrize(
    ("address", "fields"),
    [
        (None, ("", "", "", "", "", "")),
        (
            "Town Hall, Albert Square, Manchester M60 2LA",
            ("Town Hall", "Albert Square", "", "", "Manchester", "M60 2LA"),
        ),
        ("Civic Centre, Wigan", ("Civic Centre", "", "", "", "Wigan", "")),
        ("PO Box 1, a, b, c, d, Leigh WN7 1AA", ("PO Box 1", "a", "b", "c, d", "Leigh", "WN7 1AA")),
    ],
)
def test_an_address_becomes_xeros_lines_city_and_postcode(
    address: str | None, fields: tuple[str, ...]
) -> None:
    assert address_fields(address) == fields


def test_a_credit_note_is_a_document_whose_amounts_are_below_zero() -> None:
    note = Document(
        kind="credit_note",
        number="CN-000001",
        billed_name="Bury Council",
        billing_email="ap@bury.example.gov.uk",
        billing_address=None,
        reference="Credits INV-000007",
        issued_on=date(2027, 3, 1),
        due_on=None,
        lines=(("Upper tier, March 2027", 75_000, 0), ("Fee", 1_000, 2000)),
    )
    rows = [dict(zip(SALES_COLUMNS, row, strict=True)) for row in sales_rows(note, Coding())]
    assert [r["*UnitAmount"] for r in rows] == ["-750.00", "-10.00"]
    assert [r["*TaxType"] for r in rows] == ["No VAT", "20% (VAT on Income)"]
    assert {r["*DueDate"] for r in rows} == {"01/03/2027"}  # the issue date: nothing falls due
    assert {r["POCountry"] for r in rows} == {""}


def test_a_payment_is_money_in_referenced_by_its_invoice() -> None:
    assert statement_row(
        received_on=date(2026, 4, 20),
        amount_pence=200_000,
        payee="Bury Council",
        number="INV-000003",
        by_card=True,
    ) == [
        "20/04/2026",
        "2000.00",
        "Bury Council",
        "Payment by card for invoice INV-000003",
        "INV-000003",
        "",
    ]
