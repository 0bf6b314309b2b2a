"""Xero's CSV import files, from the books: pure formatting, no I/O.

Sales invoices (Xero: Business › Invoices › Import) use Xero's sales invoice template:
one row per line, the invoice's fields repeated on each of its lines, the required
columns marked ``*``. Dates are DD/MM/YYYY (a UK organisation's Xero), amounts are
plain decimals, net of VAT (choose "Tax exclusive" when importing), and VAT is the
tax rate's name as Xero shows it. A credit note is a document of the same template
whose amounts are negative: Xero imports a document whose total is below zero as a
credit note.

Payments go in as bank statement lines (Xero: the bank account › Import a
statement, its CSV template): date, amount (money in, positive), payee, description
and reference, the invoice's number, by which Xero suggests the invoice to match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

SALES_COLUMNS = (
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
)
STATEMENT_COLUMNS = ("*Date", "*Amount", "Payee", "Description", "Reference", "Cheque Number")

# A UK postcode at the end of an address part: "Manchester M60 2LA".
POSTCODE = re.compile(r"\s*\b([A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2})$", re.IGNORECASE)


@dataclass(frozen=True)
class Coding:
    """How lines are coded in Xero: the sales account, and the tax rate's name for lines
    without VAT (public bodies' subscriptions are outside its scope: "No VAT")."""

    account_code: str = "200"
    no_vat_tax_type: str = "No VAT"

    def tax_type(self, basis_points: int) -> str:
        """Xero's UK name of a VAT rate: 2000 → "20% (VAT on Income)"."""
        if basis_points == 0:
            return self.no_vat_tax_type
        whole, part = divmod(basis_points, 100)
        rate = f"{whole}" if part == 0 else f"{whole}.{part:02d}".rstrip("0")
        return f"{rate}% (VAT on Income)"


@dataclass(frozen=True)
class Document:
    """An invoice or credit note as the books hold it, with its lines (net, VAT rate)."""

    kind: str  # invoice, credit_note
    number: str
    billed_name: str
    billing_email: str
    billing_address: str | None
    reference: str | None  # the purchase order; for a credit note, the invoice it credits
    issued_on: date
    due_on: date | None
    lines: tuple[tuple[str, int, int], ...]  # description, net pence, VAT basis points


def money(pence: int) -> str:
    """Pence as Xero reads an amount: 200000 → "2000.00", -4550 → "-45.50"."""
    sign = "-" if pence < 0 else ""
    whole, part = divmod(abs(pence), 100)
    return f"{sign}{whole}.{part:02d}"


def day(value: date) -> str:
    return value.strftime("%d/%m/%Y")


def address_fields(address: str | None) -> tuple[str, str, str, str, str, str]:
    """An address kept as comma-separated parts, as Xero's four lines, city and postcode:
    a UK postcode ending the last part is its postcode, and what precedes it the city."""
    parts = [part.strip() for part in (address or "").split(",") if part.strip()]
    city = postcode = ""
    if parts and (found := POSTCODE.search(parts[-1])):
        postcode = found.group(1).upper()
        city = parts.pop()[: found.start()].strip()
    if not city and len(parts) > 1:
        city = parts.pop()
    lines = [*parts[:3], ", ".join(parts[3:])] if len(parts) > 4 else parts
    lines += [""] * (4 - len(lines))
    return lines[0], lines[1], lines[2], lines[3], city, postcode


def sales_rows(document: Document, coding: Coding) -> list[list[str]]:
    """The document's rows in the sales invoice template, one per line."""
    sign = -1 if document.kind == "credit_note" else 1
    line1, line2, line3, line4, city, postcode = address_fields(document.billing_address)
    return [
        [
            document.billed_name,
            document.billing_email,
            line1,
            line2,
            line3,
            line4,
            city,
            "",
            postcode,
            "GB" if document.billing_address else "",
            document.number,
            document.reference or "",
            day(document.issued_on),
            day(document.due_on or document.issued_on),
            "",
            description,
            "1",
            money(sign * net),
            "",
            coding.account_code,
            coding.tax_type(basis_points),
            "",
            "",
            "",
            "",
            "GBP",
            "",
        ]
        for description, net, basis_points in document.lines
    ]


def statement_row(
    *, received_on: date, amount_pence: int, payee: str, number: str, by_card: bool
) -> list[str]:
    """A payment received as a bank statement line: money in, referenced by invoice number."""
    how = "by card" if by_card else "received"
    return [
        day(received_on),
        money(amount_pence),
        payee,
        f"Payment {how} for invoice {number}",
        number,
        "",
    ]
