"""The subscriptions service's own settings, read from ``VESTRY_*`` environment variables."""

from __future__ import annotations

from datetime import time
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.subscriptions.domain import (
    REFERENCE_CATALOG,
    BillingError,
    Catalog,
    CatalogError,
    load_catalog,
    vat_on,
)
from services.subscriptions.domain.bounds import Bounds


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
    invoice_run_pause_s: float | None = Field(
        default=None,
        ge=0,
        description="Pause between a run's chunks. Unset: 0.1 s on SQLite, whose busy "
        "handler retries another process's waiting writer every 100 ms at worst (without a "
        "pause a run could starve it), and none on PostgreSQL.",
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
    earliest_year: int = Field(
        default=2000, ge=1, description="Dates before 1 January of this year are refused."
    )
    latest_year: int = Field(
        default=2100, le=9999, description="Dates after 31 December of this year are refused."
    )
    max_amount_pence: int = Field(
        default=100_000_000,
        gt=0,
        # PostgreSQL keeps money in 32-bit integers: one amount stays well below 2^31.
        le=1_000_000_000,
        description="The largest single amount (a payment, a fee, a price) the books take, "
        "in pence; £1,000,000.00 by default.",
    )
    run_backdate_days: int = Field(
        default=31,
        ge=0,
        description="How many days in the past an invoicing run may be dated; an older date "
        "is refused (its invoices would be overdue on arrival).",
    )

    xero_account_code: str = Field(
        default="200",
        max_length=10,
        description="Xero account the invoice lines are coded to in `vestry invoices export "
        "--format xero` (200: Sales, in Xero's default UK chart).",
    )
    xero_no_vat_tax_type: str = Field(
        default="No VAT",
        max_length=50,
        description="Xero's tax rate for lines without VAT (subscriptions between public "
        'bodies, outside its scope); "Zero Rated Income" where they are zero-rated.',
    )

    def bounds(self) -> Bounds:
        return Bounds(
            earliest_year=self.earliest_year,
            latest_year=self.latest_year,
            max_amount_pence=self.max_amount_pence,
            run_backdate_days=self.run_backdate_days,
        )

    def catalog(self) -> Catalog:
        """The catalog in use; raises CatalogError if a price is above the amount ceiling."""
        catalog = load_catalog(self.catalog_file) if self.catalog_file else REFERENCE_CATALOG
        for tier in catalog.tiers.values():
            for price in tier.prices:
                try:
                    self.bounds().check_amount(
                        price.net_pence + vat_on(price.net_pence, price.vat_basis_points),
                        "catalog",
                    )
                except BillingError as error:
                    raise CatalogError(
                        "invalid", f"tier {tier.code!r} from {price.from_year}: {error}", "catalog"
                    ) from None
        return catalog
