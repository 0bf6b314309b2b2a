"""Price entries with an end year: a price holds from its first financial year to its
last; of two in force, the later started holds; a tier whose prices have all ended is
withdrawn, so it needs no price after and nobody joins or moves to it."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from services.subscriptions.domain import CatalogError, MembershipError, join, load_catalog
from services.subscriptions.domain.members import check_tier_change

CATALOG = """
[tiers.district]
label = "District council"
prices = [
  { from_year = 2008, amount = "2,000.00" },
  { from_year = 2027, until_year = 2027, amount = "1,800.00" },
]

[tiers.legacy]
label = "Legacy associate"
prices = [
  { from_year = 2005, until_year = 2010, amount = "500.00" },
]
"""


@pytest.fixture
def catalog_file(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(CATALOG)
    return path


def test_a_one_year_price_sets_the_standing_one_aside_for_that_year_only(
    catalog_file: Path,
) -> None:
    district = load_catalog(catalog_file).tier("district")
    assert [district.price_for(y).net_pence for y in (2026, 2027, 2028)] == [
        200_000,
        180_000,
        200_000,
    ]


def test_a_tier_whose_prices_ended_is_withdrawn_and_needs_no_price_after(
    catalog_file: Path,
) -> None:
    catalog = load_catalog(catalog_file)
    assert catalog.price("legacy", 2010).net_pence == 50_000
    with pytest.raises(CatalogError) as none:
        catalog.price("legacy", 2011)
    assert none.value.code == "no_price" and "ended in 2010" in str(none.value)
    assert catalog.withdrawn(2010) == [] and catalog.withdrawn(2011) == ["legacy"]
    catalog.check_year(2026)  # the withdrawn tier needs no 2026 price
    with pytest.raises(CatalogError):
        catalog.check_year(2006)  # district has no price before 2008


def test_nobody_joins_or_moves_to_a_withdrawn_tier(catalog_file: Path) -> None:
    tiers = load_catalog(catalog_file).tiers
    joined = join(
        name="Wyre Council",
        tier="legacy",
        billing_email="ap@wyre.example.gov.uk",
        joined_on=date(2010, 6, 1),
        name_taken=False,
        tiers=tiers,
    )
    assert joined.tier == "legacy"
    with pytest.raises(MembershipError) as refused:
        join(
            name="Fylde Council",
            tier="legacy",
            billing_email="ap@fylde.example.gov.uk",
            joined_on=date(2011, 4, 1),
            name_taken=False,
            tiers=tiers,
        )
    assert (refused.value.field, str(refused.value)) == (
        "tier",
        "tier 'legacy' is no longer offered: its prices ended in 2010",
    )
    with pytest.raises(MembershipError):
        check_tier_change(
            current_tier="district",
            new_tier="legacy",
            starts_on=date(2008, 4, 1),
            ends_on=None,
            effective_on=date(2012, 1, 1),
            tiers=tiers,
        )


def test_an_entry_that_ends_before_it_starts_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(
        '[tiers.district]\nlabel = "District"\n'
        'prices = [{ from_year = 2010, until_year = 2009, amount = "1.00" }]\n'
    )
    with pytest.raises(CatalogError) as refused:
        load_catalog(path)
    assert "ends in 2009, before it starts in 2010" in str(refused.value)
