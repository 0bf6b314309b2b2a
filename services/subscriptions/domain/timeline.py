"""A membership over time: which tier each month is billed at, and what a dated
tier change or a leave needs issued for the years already billed. Free of I/O.

Changes take effect on their date, by whole months: a join from its month, a
tier change from the month its date falls in (a change on 15 October bills
October at the new tier), a leave after its month. A year not yet invoiced is
billed at the tier each of its months has, one line per run of months at one
tier; a year already invoiced gets a credit note for the months whose tier
changed, at the tier they were billed at, and an invoice for the same months
at the tier they now have. So whatever order things are recorded in, and
whether before or after the run, a year's invoices less its credit notes cost
what its months cost at their tiers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Literal

from services.subscriptions.domain.billing import (
    MONTHS,
    Charge,
    Line,
    _months_label,
    charge_from_month,
    first_billable_month,
)
from services.subscriptions.domain.catalog import (
    Catalog,
    financial_year,
    month_of_year,
    month_start,
    year_ends,
    year_starts,
)


@dataclass(frozen=True)
class DatedTier:
    """A tier change as recorded: from ``effective_on`` the membership is at ``tier``."""

    effective_on: date
    tier: str


@dataclass(frozen=True)
class Timeline:
    """A membership's dates and tiers: ``first_tier`` from ``starts_on``, then each change."""

    starts_on: date
    ends_on: date | None
    first_tier: str
    changes: tuple[DatedTier, ...] = ()  # in the order they were recorded

    def tier_in(self, year: int, month: int) -> str:
        """The tier month ``month`` (0 = April) of ``year`` is billed at: that of the last
        change (by date; by recording for one date) taking effect in or before it."""
        tier = self.first_tier
        for change in sorted(self.changes, key=lambda c: c.effective_on):
            if (financial_year(change.effective_on), month_of_year(change.effective_on)) <= (
                year,
                month,
            ):
                tier = change.tier
        return tier

    def tier_on(self, day: date) -> str:
        return self.tier_in(financial_year(day), month_of_year(day))

    def with_change(self, change: DatedTier) -> Timeline:
        return replace(self, changes=(*self.changes, change))

    def leaving_on(self, ends_on: date) -> Timeline:
        return replace(self, ends_on=ends_on)


def billed_months(year: int, starts_on: date, ends_on: date | None, refund_leavers: bool) -> range:
    """The months of ``year`` a membership pays for: from its joining month (or April),
    to March, or to its leaving month when the catalog refunds leavers; none if it
    starts after the year or ended before it."""
    first = first_billable_month(year, starts_on)
    if first is None or (ends_on is not None and ends_on < year_starts(year)):
        return range(0)
    last = MONTHS - 1
    if refund_leavers and ends_on is not None and ends_on <= year_ends(year):
        last = month_of_year(ends_on)
    return range(first, last + 1)


def _runs(timeline: Timeline, year: int, months: Iterable[int]) -> list[tuple[str, int, int]]:
    """Consecutive months at one tier: (tier, first month, last month)."""
    runs: list[tuple[str, int, int]] = []
    for month in months:
        tier = timeline.tier_in(year, month)
        if runs and runs[-1][0] == tier and runs[-1][2] == month - 1:
            runs[-1] = (tier, runs[-1][1], month)
        else:
            runs.append((tier, month, month))
    return runs


def months_at_tiers(
    catalog: Catalog,
    timeline: Timeline,
    year: int,
    months: Iterable[int],
    *,
    kind: Literal["invoice", "credit_note"],
    purpose: Literal["recurring", "tier_change", "leaver_refund"],
    credit_words: str = "credit",
) -> Charge | None:
    """The document for ``months`` of ``year`` at the tiers ``timeline`` gives them, a line
    per run of months at one tier; None when there are no months. Raises CatalogError
    for a tier or year without a price."""
    lines = []
    for code, first, last in _runs(timeline, year, months):
        tier = catalog.tier(code)
        price = tier.price_for(year)
        count = last - first + 1
        net = charge_from_month(price.net_pence, first) - charge_from_month(
            price.net_pence, last + 1
        )
        label = _months_label(year, first, last) + (f" ({count} months)" if count < MONTHS else "")
        description = (
            f"{tier.label} subscription, {label}"
            if kind == "invoice"
            else f"{tier.label} subscription, {credit_words} for {label}"
        )
        lines.append(Line(description, tier.code, count, net, price.vat_basis_points))
    if not lines:
        return None
    return Charge(kind, purpose, year, tuple(lines))


def yearly_charge(
    catalog: Catalog, timeline: Timeline, year: int, refund_leavers: bool
) -> Charge | None:
    """A year's subscription invoice, each month at the tier it has; None if it owes nothing."""
    months = billed_months(year, timeline.starts_on, timeline.ends_on, refund_leavers)
    return months_at_tiers(catalog, timeline, year, months, kind="invoice", purpose="recurring")


def tier_change_documents(
    catalog: Catalog,
    before: Timeline,
    change: DatedTier,
    billed_years: Sequence[int],
    refund_leavers: bool,
) -> list[tuple[int, Charge, Charge]]:
    """For each year already billed that the change reaches: a credit note for the months
    whose tier it changes (at the tier they were billed at) and an invoice for the same
    months at the tier they now have. Years not yet billed need nothing: their run bills
    each month at its tier."""
    after = before.with_change(change)
    documents = []
    for year in sorted(billed_years):
        if year < financial_year(change.effective_on):
            continue
        months = [
            month
            for month in billed_months(year, before.starts_on, before.ends_on, refund_leavers)
            if before.tier_in(year, month) != after.tier_in(year, month)
        ]
        credit = months_at_tiers(
            catalog,
            before,
            year,
            months,
            kind="credit_note",
            purpose="tier_change",
            credit_words="credit on the tier change",
        )
        invoice = months_at_tiers(
            catalog, after, year, months, kind="invoice", purpose="tier_change"
        )
        if credit is not None and invoice is not None:
            documents.append((year, credit, invoice))
    return documents


def leaving_documents(
    catalog: Catalog,
    before: Timeline,
    leaves_on: date,
    billed_years: Sequence[int],
    refund_leavers: bool,
) -> list[tuple[int, Charge]]:
    """Credit notes for what a leaver was billed beyond its membership: the whole months
    after its leaving month, if the catalog refunds leavers; and every year billed in
    advance after the year it leaves in, in full whatever the catalog says (it was
    never a member then)."""
    leaving_year = financial_year(leaves_on)
    documents = []
    for year in sorted(billed_years):
        was_billed = billed_months(year, before.starts_on, before.ends_on, refund_leavers)
        if year == leaving_year and refund_leavers:
            months = [m for m in was_billed if m > month_of_year(leaves_on)]
            words = "refund of unused months"
        elif year > leaving_year:
            months = list(was_billed)
            words = "credit after leaving"
        else:
            continue
        credit = months_at_tiers(
            catalog,
            before,
            year,
            months,
            kind="credit_note",
            purpose="leaver_refund",
            credit_words=words,
        )
        if credit is not None:
            documents.append((year, credit))
    return documents


def pays_from_on_rejoining(*, left_on: date, joined_on: date, refund_leavers: bool) -> date:
    """The first day a rejoining member pays for: its joining day, unless its last
    membership already paid for it (to the end of its leaving month when leavers are
    refunded, else to the end of its leaving year)."""
    year = financial_year(left_on)
    if refund_leavers:
        month = month_of_year(left_on)
        paid_until = (
            year_ends(year)
            if month == MONTHS - 1
            else month_start(year, month + 1) - timedelta(days=1)
        )
    else:
        paid_until = year_ends(year)
    return max(joined_on, paid_until + timedelta(days=1))
