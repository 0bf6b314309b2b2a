"""Subscriptions' rules, free of I/O: the catalog, memberships and billing."""

from services.subscriptions.domain.billing import (
    BillingError,
    Charge,
    Line,
    charge_from_month,
    month_cost,
    recurring_charge,
    vat_on,
)
from services.subscriptions.domain.catalog import (
    REFERENCE_CATALOG,
    Catalog,
    CatalogError,
    Price,
    Tier,
    financial_year,
    load_catalog,
)
from services.subscriptions.domain.members import (
    REFERENCE_TIERS,
    MembershipError,
    NewMembership,
    check_leaving,
    check_rejoining,
    check_tier_change,
    join,
)

__all__ = [
    "REFERENCE_CATALOG",
    "REFERENCE_TIERS",
    "BillingError",
    "Catalog",
    "CatalogError",
    "Charge",
    "Line",
    "MembershipError",
    "NewMembership",
    "Price",
    "Tier",
    "charge_from_month",
    "check_leaving",
    "check_rejoining",
    "check_tier_change",
    "financial_year",
    "join",
    "load_catalog",
    "month_cost",
    "recurring_charge",
    "vat_on",
]
