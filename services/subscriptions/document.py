"""The printable invoice: an HTML document rendered with Jinja2 from an invoice's data."""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from services.subscriptions.domain.billing import pounds
from services.subscriptions.settings import BillingSettings


def long_date(iso: str | None) -> str:
    return f"{date.fromisoformat(iso):%-d %B %Y}" if iso else ""


@lru_cache(maxsize=1)
def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("services.subscriptions", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
    )
    environment.filters["pounds"] = pounds
    environment.filters["long_date"] = long_date
    return environment


def render_invoice(document: dict[str, Any], settings: BillingSettings) -> str:
    """The invoice (or credit note) as a standalone HTML page."""
    return (
        _environment()
        .get_template("invoice.html.j2")
        .render(
            doc=document,
            partnership={
                "name": settings.partnership_name,
                "address_lines": [part.strip() for part in settings.partnership_address.split(",")],
                "vat_number": settings.partnership_vat_number,
                "payment_instructions": settings.payment_instructions,
            },
        )
    )
