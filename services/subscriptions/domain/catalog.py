"""The catalog: tiers, their dated price lists and VAT rates, and the UK financial year.

Prices take effect from a financial year and hold until a later entry replaces
them, or until the last year an entry names (``until_year``), so adding a new year's
prices never changes an old year's invoices. Where two entries are in force in one
year, the one that started later holds: a price for one year only (``from_year`` =
``until_year``) sets aside the standing one, which holds again after it. A tier whose
every price has ended is withdrawn: nobody joins it, and it needs no price after.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any


class CatalogError(Exception):
    """Raised when a catalog file or a price lookup does not make sense."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


def financial_year(day: date) -> int:
    """The UK public-sector financial year holding ``day``: 2026 is 1 Apr 2026 – 31 Mar 2027."""
    return day.year if day.month >= 4 else day.year - 1


def year_starts(year: int) -> date:
    return date(year, 4, 1)


def year_ends(year: int) -> date:
    return date(year + 1, 3, 31)


def month_of_year(day: date) -> int:
    """0 for April … 11 for March."""
    return (day.month - 4) % 12


def month_start(year: int, month: int) -> date:
    """First day of month ``month`` (0 = April) of financial ``year``."""
    calendar_month = (month + 3) % 12 + 1
    return date(year + (1 if calendar_month < 4 else 0), calendar_month, 1)


@dataclass(frozen=True)
class Price:
    """A tier's yearly price from financial year ``from_year`` on (to ``until_year``, its
    last, when it has one), net of VAT."""

    from_year: int
    net_pence: int
    vat_basis_points: int = 0  # 2000 = 20%
    until_year: int | None = None

    def in_force(self, year: int) -> bool:
        return self.from_year <= year and (self.until_year is None or year <= self.until_year)


@dataclass(frozen=True)
class Tier:
    code: str
    label: str
    prices: tuple[Price, ...] = ()

    def price_for(self, year: int) -> Price:
        """The price in force in ``year`` (of two, the later started); raises CatalogError
        when none is."""
        in_force = [price for price in self.prices if price.in_force(year)]
        if not in_force:
            ended = self.ended_in(year)
            why = f": its prices ended in {ended}" if ended is not None else ""
            raise CatalogError(
                "no_price",
                f"tier {self.code!r} has no price list for financial year {year}{why}",
                "year",
            )
        return max(in_force, key=lambda price: price.from_year)

    def ended_in(self, year: int) -> int | None:
        """The last year it had a price, if every price it has ended before ``year``
        (the tier is withdrawn); None if it is still offered, or never was."""
        if not self.prices or any(
            price.until_year is None or price.until_year >= year for price in self.prices
        ):
            return None
        return max(price.until_year or 0 for price in self.prices)


@dataclass(frozen=True)
class Catalog:
    tiers: dict[str, Tier] = field(default_factory=dict)
    refund_leavers: bool = False

    def tier(self, code: str) -> Tier:
        try:
            return self.tiers[code]
        except KeyError:
            known = ", ".join(sorted(self.tiers))
            raise CatalogError(
                "invalid", f"unknown tier {code!r}; the tiers are {known}", "tier"
            ) from None

    def price(self, code: str, year: int) -> Price:
        return self.tier(code).price_for(year)

    def check_year(self, year: int) -> None:
        """Raise CatalogError unless every tier still offered has a price in ``year``."""
        for tier in self.tiers.values():
            if tier.ended_in(year) is None:
                tier.price_for(year)

    def withdrawn(self, year: int) -> list[str]:
        """The tiers whose every price ended before ``year``."""
        return sorted(code for code, tier in self.tiers.items() if tier.ended_in(year))


# The reference partnership: today's rates from 2008, the previous ones before
# (from 2005, the earliest year the plan gives). Subscriptions between these
# public bodies are outside the scope of VAT, so the rate is 0; a catalog file
# sets its own.
REFERENCE_CATALOG = Catalog(
    tiers={
        tier.code: tier
        for tier in (
            Tier(
                "upper-tier",
                "Upper-tier council (metropolitan, county, unitary)",
                (Price(2005, 800_000), Price(2008, 900_000)),
            ),
            Tier("district", "District council", (Price(2005, 150_000), Price(2008, 200_000))),
            Tier(
                "public-service",
                "Police, fire or primary-care body",
                (Price(2005, 150_000), Price(2008, 250_000)),
            ),
        )
    }
)


def parse_pounds(text: str | int | float) -> int:
    """'9000', '£9,000.00' or 9000 → pence; refuses negatives and fractions of a penny."""
    raw = str(text).replace(",", "").replace("£", "").strip()
    pounds, _, pence = raw.partition(".")
    if not pounds.isdigit() or (pence and (not pence.isdigit() or len(pence) > 2)):
        raise CatalogError("invalid", f"{text!r} is not an amount in pounds and pence", "amount")
    return int(pounds) * 100 + (int(pence.ljust(2, "0")) if pence else 0)


def parse_vat_rate(text: str | int | float) -> int:
    """'20%', '20', 20, '17.5%' → basis points."""
    raw = str(text).strip().rstrip("%").strip()
    whole, _, fraction = raw.partition(".")
    if not whole.isdigit() or (fraction and (not fraction.isdigit() or len(fraction) > 2)):
        raise CatalogError("invalid", f"{text!r} is not a VAT rate like '20%'", "vat")
    basis_points = int(whole) * 100 + (int(fraction.ljust(2, "0")) if fraction else 0)
    if basis_points > 10_000:
        raise CatalogError("invalid", f"VAT rate {text!r} is over 100%", "vat")
    return basis_points


def catalog_from_dict(data: dict[str, Any]) -> Catalog:
    """A catalog from parsed TOML: ``refund_leavers`` and ``[tiers.<code>]`` with ``prices``."""
    tiers: dict[str, Tier] = {}
    for code, body in (data.get("tiers") or {}).items():
        where = f"tiers.{code}"
        if not isinstance(body, dict) or "label" not in body:
            raise CatalogError("invalid", f"{where} needs a label", where)
        prices = []
        for n, entry in enumerate(body.get("prices") or []):
            try:
                until = entry.get("until_year")
                price = Price(
                    from_year=int(entry["from_year"]),
                    net_pence=parse_pounds(entry["amount"]),
                    vat_basis_points=parse_vat_rate(entry.get("vat", 0)),
                    until_year=None if until is None else int(until),
                )
            except KeyError as missing:
                raise CatalogError(
                    "invalid", f"{where}.prices[{n}] needs {missing}", f"{where}.prices"
                ) from None
            if price.until_year is not None and price.until_year < price.from_year:
                raise CatalogError(
                    "invalid",
                    f"{where}.prices[{n}] ends in {price.until_year}, before it starts in "
                    f"{price.from_year}",
                    f"{where}.prices",
                )
            prices.append(price)
        if len({price.from_year for price in prices}) != len(prices):
            raise CatalogError("invalid", f"{where} has two prices from the same year", where)
        tiers[code] = Tier(
            code, str(body["label"]), tuple(sorted(prices, key=lambda p: p.from_year))
        )
    if not tiers:
        raise CatalogError("invalid", "the catalog has no tiers", "tiers")
    return Catalog(tiers=tiers, refund_leavers=bool(data.get("refund_leavers", False)))


def load_catalog(path: Path) -> Catalog:
    """Read a TOML catalog file; raises CatalogError saying what is wrong with it."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise CatalogError("invalid", f"cannot read catalog {path}: {error}", "catalog") from None
    return catalog_from_dict(data)
