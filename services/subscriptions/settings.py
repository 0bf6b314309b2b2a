"""The subscriptions service's own settings, read from ``VESTRY_*`` environment variables."""

from __future__ import annotations

from datetime import time
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.subscriptions.domain import REFERENCE_CATALOG, Catalog, load_catalog


class BillingSettings(BaseSettings):
    """Who the partnership is on its invoices, and how invoicing runs."""

    model_config = SettingsConfigDict(env_prefix="VESTRY_", env_file=".env", extra="ignore")

    partnership_name: str = Field(
        default="North West Improvement Partnership", description="Name on every invoice."
    )
    partnership_address: str = Field(
        default="Town Hall, Albert Square, Manchester M60 2LA",
        description="Postal address on every invoice; commas become line breaks.",
    )
    partnership_vat_number: str = Field(
        default="GB 123 4567 89", description="VAT registration number on every invoice."
    )
    payment_instructions: str = Field(
        default="Pay by BACS to sort code 00-00-00, account 12345678, quoting the invoice number.",
        description="How to pay, printed on every invoice.",
    )
    catalog_file: Path | None = Field(
        default=None,
        description="TOML catalog of tiers and dated prices; the reference one if unset.",
    )
    invoice_due_days: int = Field(default=30, ge=0, description="Days from issue to due date.")
    booking_vat_basis_points: int = Field(
        default=2000,
        ge=0,
        le=10_000,
        description="VAT on event fees, in basis points (2000 = 20%).",
    )
    invoice_run_chunk: int = Field(
        default=2500, ge=1, description="Invoices issued per transaction in a run."
    )
    invoice_run_pause_s: float = Field(
        default=0.1,
        ge=0,
        description="Pause between a run's chunks. SQLite's busy handler retries a waiting "
        "writer every 100 ms at worst, so without a pause a run can starve other commands.",
    )
    invoice_run_lease_s: float = Field(
        default=30.0, gt=0, description="A run not heard from for this long may be taken over."
    )
    invoicing_day: str = Field(
        default="04-01", pattern=r"^\d\d-\d\d$", description="MM-DD of the yearly run."
    )
    invoicing_time: time = Field(
        default=time(6, 0), description="Europe/London time of the yearly run and monthly sweeps."
    )
    automation: bool = Field(
        default=True,
        description="Run the yearly invoicing, monthly joiner sweep and overdue sweep.",
    )
    automation_tick_s: float = Field(default=60.0, gt=0, description="How often automation looks.")

    def catalog(self) -> Catalog:
        return load_catalog(self.catalog_file) if self.catalog_file else REFERENCE_CATALOG
