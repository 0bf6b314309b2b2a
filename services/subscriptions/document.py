"""Invoices, credit notes and statements of account as documents: HTML rendered with
Jinja2 (one template for invoices and credit notes, one for statements), and PDF
printed from that HTML with WeasyPrint.

An invoice or credit note is the document as issued: what it charges or credits, to
whom, when, and how to pay; it says so if the invoice is void. What was paid or
credited against it since belongs to the member's statement, so the document a
billing contact was emailed is the one the CLI and the back office print later.

A PDF depends on its document alone: the dates in its metadata are the document's
own (its issue date; a statement's date) and its file identifier is derived from
its number, so the same document gives the same bytes every time. The fonts are
fontconfig's (DejaVu Sans, from Debian's ``fonts-dejavu-core``), so two machines
give the same bytes when they have the same fonts and the same WeasyPrint.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from services.subscriptions.domain.billing import pounds
from services.subscriptions.settings import BillingSettings

PDF = "application/pdf"
HTML = "text/html; charset=utf-8"

# Why a credit note was issued, as the document says it (HMRC asks for the reason).
CREDIT_REASONS = {
    "tier_change": "change of tier: the months it changes, credited at the previous tier",
    "leaver_refund": "end of membership: the months not used",
    "booking_refund": "a cancelled booking",
}

# Debt by age, as a person reads it.
AGE_LABELS = {
    "not_due": "Not yet due",
    "1-30": "1 to 30 days overdue",
    "31-60": "31 to 60 days overdue",
    "61-90": "61 to 90 days overdue",
    "over_90": "More than 90 days overdue",
}


@dataclass(frozen=True)
class Supplier:
    """Who issues the documents: the partnership, as a VAT invoice must name it."""

    name: str
    address_lines: tuple[str, ...]
    vat_number: str | None
    payment_instructions: str

    @classmethod
    def of(cls, settings: BillingSettings) -> Supplier:
        return cls(
            name=settings.partnership_name,
            address_lines=tuple(address_lines(settings.partnership_address)),
            vat_number=settings.partnership_vat_number.strip() or None,
            payment_instructions=settings.payment_instructions,
        )


@dataclass(frozen=True)
class Rendered:
    """A document as a file: what a command answers, and what an email attaches."""

    filename: str
    media_type: str
    content: bytes

    def answer(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "media_type": self.media_type,
            "content_base64": base64.b64encode(self.content).decode("ascii"),
            "sha256": hashlib.sha256(self.content).hexdigest(),
        }


def address_lines(address: str | None) -> list[str]:
    """A one-line address (parts separated by commas) as its lines."""
    return [part.strip() for part in (address or "").split(",") if part.strip()]


def long_date(iso: str | date | None) -> str:
    if not iso:
        return ""
    day = iso if isinstance(iso, date) else date.fromisoformat(iso)
    return f"{day:%-d %B %Y}"


def year_label(year: int) -> str:
    """Financial year 2026 as '2026–27'."""
    return f"{year}–{(year + 1) % 100:02d}"


def rate_label(rate: float) -> str:
    return f"{rate:g}%"


@lru_cache(maxsize=1)
def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("services.subscriptions", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
    )
    environment.filters.update(
        pounds=pounds,
        long_date=long_date,
        year_label=year_label,
        rate_label=rate_label,
        address_lines=address_lines,
    )
    environment.globals.update(credit_reasons=CREDIT_REASONS, age_labels=AGE_LABELS)
    return environment


def vat_analysis(lines: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Net and VAT summed by rate, highest rate first."""
    rates: dict[float, dict[str, Any]] = {}
    for line in lines:
        row = rates.setdefault(line["vat_rate"], {"rate": line["vat_rate"], "net": 0, "vat": 0})
        row["net"] += line["net"]
        row["vat"] += line["vat"]
    return [rates[rate] for rate in sorted(rates, reverse=True)]


def invoice_html(document: Mapping[str, Any], supplier: Supplier) -> str:
    """The invoice or credit note (``ShowInvoice``'s answer) as a standalone HTML page."""
    return (
        _environment()
        .get_template("invoice.html.j2")
        .render(doc=document, supplier=supplier, vat_rates=vat_analysis(document["lines"]))
    )


def statement_html(statement: Mapping[str, Any], supplier: Supplier) -> str:
    """A member's statement of account (``ShowStatement``'s answer) as an HTML page."""
    return _environment().get_template("statement.html.j2").render(st=statement, supplier=supplier)


def pdf_identifier(*parts: str) -> bytes:
    """The PDF's file identifier: 32 hex digits from what names the document."""
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:32].encode("ascii")


@lru_cache(maxsize=64)
def print_pdf(html: str, identifier: bytes) -> bytes:
    """``html`` printed to PDF; the same arguments always give the same bytes.

    The dates in the PDF's metadata come from the page's ``dcterms.created`` and
    ``dcterms.modified``, never the clock; ``identifier`` is its file identifier.
    """
    from weasyprint import HTML as Page  # imported on first use: it loads Pango

    return Page(string=html).write_pdf(
        pdf_identifier=identifier, pdf_tags=True, font_config=_fonts()
    )


@lru_cache(maxsize=1)
def _fonts() -> Any:
    """One font configuration for every document (they declare no fonts of their own):
    a quarter of each print went on building it afresh. The bytes are the same."""
    from weasyprint.text.fonts import FontConfiguration

    return FontConfiguration()


# One printer thread: WeasyPrint is not documented as thread-safe, and the service's
# event loop goes on answering commands and applying facts while a document prints.
_printer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="document-printer")


async def printed(html: str, identifier: bytes) -> bytes:
    """``print_pdf`` in the printer thread."""
    return await asyncio.get_running_loop().run_in_executor(_printer, print_pdf, html, identifier)


async def as_file(html: str, *, name: str, format: str, identifier: bytes) -> Rendered:
    """The document named ``name`` as an HTML or a PDF file."""
    if format == "html":
        return Rendered(f"{name}.html", HTML, html.encode("utf-8"))
    return Rendered(f"{name}.pdf", PDF, await printed(html, identifier))
