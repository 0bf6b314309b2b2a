"""What a member owes: VAT, proration by whole months, tier changes and leavers.

All amounts are integer pence. A year's price is spread over its twelve months
so that the months always add up to the price: the charge for the months from
``m`` to the year's end is the price × (12 − m) / 12, rounded half up to the
penny, and a single month costs the difference of two such charges. A joiner,
a tier change and a leaver's refund are all charges "from month m to the end",
so invoices and credit notes over a year add up to what the months cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from services.subscriptions.domain.catalog import (
    Catalog,
    Price,
    financial_year,
    month_of_year,
    month_start,
    year_ends,
    year_starts,
)

MONTHS = 12
DEFAULT_DUE_DAYS = 30


class BillingError(Exception):
    """Raised when a charge, payment or credit would break a billing rule."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


def divide_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half up (away from zero for halves), for non-negatives."""
    if numerator < 0 or denominator <= 0:
        raise ValueError("divide_half_up takes a non-negative numerator and a positive denominator")
    return (2 * numerator + denominator) // (2 * denominator)


def vat_on(net_pence: int, basis_points: int) -> int:
    """VAT on a net amount, rounded half up to the penny."""
    return divide_half_up(net_pence * basis_points, 10_000)


def charge_from_month(net_year_pence: int, month: int) -> int:
    """What the months from ``month`` (0 = April) to March cost, rounded half up."""
    if not 0 <= month <= MONTHS:
        raise ValueError(f"month {month} is not 0–12")
    return divide_half_up(net_year_pence * (MONTHS - month), MONTHS)


def month_cost(net_year_pence: int, month: int) -> int:
    """What one month costs; the twelve add up to the year's price."""
    return charge_from_month(net_year_pence, month) - charge_from_month(net_year_pence, month + 1)


@dataclass(frozen=True)
class Line:
    """One line of a document. A booking's line names its booker apart from its
    description, so that the description (which goes out in facts) names no one and
    erasure can clear the booker alone."""

    description: str
    tier: str | None
    months: int
    net_pence: int
    vat_basis_points: int
    booker_name: str | None = None
    booker_email: str | None = None

    @property
    def vat_pence(self) -> int:
        return vat_on(self.net_pence, self.vat_basis_points)

    @property
    def gross_pence(self) -> int:
        return self.net_pence + self.vat_pence


@dataclass(frozen=True)
class Charge:
    """A document to issue: an invoice or a credit note, with its lines."""

    kind: Literal["invoice", "credit_note"]
    purpose: Literal["recurring", "tier_change", "leaver_refund", "booking", "booking_refund"]
    year: int
    lines: tuple[Line, ...]

    @property
    def net_pence(self) -> int:
        return sum(line.net_pence for line in self.lines)

    @property
    def vat_pence(self) -> int:
        return sum(line.vat_pence for line in self.lines)

    @property
    def gross_pence(self) -> int:
        return self.net_pence + self.vat_pence

    @property
    def signed_net_pence(self) -> int:
        return self.net_pence if self.kind == "invoice" else -self.net_pence


def _months_label(year: int, first_month: int, last_month: int = MONTHS - 1) -> str:
    """'1 Apr 2026 – 31 Mar 2027', or the months' own first and last days."""
    if first_month == 0 and last_month == MONTHS - 1:
        return f"1 Apr {year} – 31 Mar {year + 1}"
    if last_month == MONTHS - 1:
        last_day = year_ends(year)
    else:
        last_day = month_start(year, last_month + 1) - timedelta(days=1)
    return f"{month_start(year, first_month):%-d %b %Y} – {last_day:%-d %b %Y}"


def first_billable_month(year: int, starts_on: date) -> int | None:
    """The first month of ``year`` a membership starting ``starts_on`` pays for; None if later."""
    if starts_on > year_ends(year):
        return None
    if starts_on <= year_starts(year):
        return 0
    return month_of_year(starts_on)


def recurring_charge(
    *,
    year: int,
    tier_code: str,
    tier_label: str,
    price: Price,
    starts_on: date,
    ends_on: date | None,
    refund_leavers: bool,
) -> Charge | None:
    """The year's subscription invoice for one membership, or None if it owes nothing that year.

    A joiner pays the whole months left, the joining month included. A member
    who left before the year is not billed; one who leaves during it pays to
    the year's end unless the catalog refunds leavers, when it pays up to and
    including its leaving month.
    """
    first = first_billable_month(year, starts_on)
    if first is None or (ends_on is not None and ends_on < year_starts(year)):
        return None
    net = charge_from_month(price.net_pence, first)
    months = MONTHS - first
    if refund_leavers and ends_on is not None and ends_on <= year_ends(year):
        after = month_of_year(ends_on) + 1
        net -= charge_from_month(price.net_pence, after)
        months -= MONTHS - after
    if months <= 0:
        return None
    line = Line(
        f"{tier_label} subscription, {_months_label(year, first)}"
        + (f" ({months} months)" if months < MONTHS else ""),
        tier_code,
        months,
        net,
        price.vat_basis_points,
    )
    return Charge("invoice", "recurring", year, (line,))


def tier_change_charges(
    *,
    effective_on: date,
    old_tier: str,
    old_label: str,
    old_price: Price,
    new_tier: str,
    new_label: str,
    new_price: Price,
    billed_from_month: int,
) -> tuple[Charge, Charge]:
    """A credit note for the old tier's remaining months and an invoice at the new tier.

    The change takes effect from the month of ``effective_on``; if that month
    comes before the first month the member was billed for, from that month.
    (The service issues these through ``timeline.tier_change_documents``, which
    also handles changes recorded out of date order, leavers and later years.)
    """
    year = financial_year(effective_on)
    month = max(month_of_year(effective_on), billed_from_month)
    months = MONTHS - month
    credit = Line(
        f"{old_label} subscription, credit for {months} months from the tier change",
        old_tier,
        months,
        charge_from_month(old_price.net_pence, month),
        old_price.vat_basis_points,
    )
    invoice = Line(
        f"{new_label} subscription, {_months_label(year, month)} ({months} months)",
        new_tier,
        months,
        charge_from_month(new_price.net_pence, month),
        new_price.vat_basis_points,
    )
    return (
        Charge("credit_note", "tier_change", year, (credit,)),
        Charge("invoice", "tier_change", year, (invoice,)),
    )


def leaver_refund(
    *, ends_on: date, tier_code: str, tier_label: str, price: Price, billed_from_month: int
) -> Charge | None:
    """A credit note for the whole months after the leaving month, if any are left."""
    year = financial_year(ends_on)
    after = max(month_of_year(ends_on) + 1, billed_from_month)
    if after >= MONTHS:
        return None
    line = Line(
        f"{tier_label} subscription, refund of {MONTHS - after} unused months",
        tier_code,
        MONTHS - after,
        charge_from_month(price.net_pence, after),
        price.vat_basis_points,
    )
    return Charge("credit_note", "leaver_refund", year, (line,))


def due_date(issued_on: date, days: int = DEFAULT_DUE_DAYS) -> date:
    return issued_on + timedelta(days=days)


# Payments, credits and overdue reminders

InvoiceStatus = Literal["issued", "part_paid", "paid", "credited", "void"]

REMINDER_STAGES: tuple[tuple[str, int], ...] = (("first", 1), ("second", 14), ("final", 30))


def balance(gross_pence: int, paid_pence: int, credited_pence: int = 0) -> int:
    """What is still owed on an invoice: its total less payments less credits set against it."""
    return gross_pence - paid_pence - credited_pence


def status_of(gross_pence: int, paid_pence: int, credited_pence: int = 0) -> InvoiceStatus:
    """An invoice's status from its money: settled when nothing is owed.

    Settled by payment (in part or whole) is ``paid``; settled by credits alone
    is ``credited``. A part-credited invoice with nothing paid stays ``issued``:
    it is still owed, for what remains.
    """
    if balance(gross_pence, paid_pence, credited_pence) <= 0:
        return "paid" if paid_pence > 0 else "credited"
    return "part_paid" if paid_pence > 0 else "issued"


def status_after_payment(
    gross_pence: int, paid_pence: int, credited_pence: int = 0
) -> InvoiceStatus:
    return status_of(gross_pence, paid_pence, credited_pence)


def check_payment(
    *,
    number: str,
    status: str,
    gross_pence: int,
    paid_pence: int,
    amount_pence: int,
    credited_pence: int = 0,
) -> int:
    """The amount still owed after a payment of ``amount_pence``; raises BillingError.

    What is owed is the invoice's balance: its total less what was paid and what
    credit notes took off it, so a payment can never settle more than that.
    """
    outstanding = balance(gross_pence, paid_pence, credited_pence)
    if amount_pence <= 0:
        raise BillingError("invalid", "a payment must be more than £0.00", "amount")
    if status == "void":
        raise BillingError("void", f"invoice {number} is void; it takes no payments", "invoice")
    if outstanding <= 0:
        if paid_pence >= gross_pence:
            raise BillingError("paid", f"invoice {number} is already paid in full", "invoice")
        raise BillingError(
            "credited",
            f"invoice {number} is settled: {pounds(paid_pence)} paid and "
            f"{pounds(credited_pence)} credited; nothing is owed on it",
            "invoice",
        )
    if amount_pence > outstanding:
        credited = f" after {pounds(credited_pence)} of credit" if credited_pence else ""
        raise BillingError(
            "overpayment",
            f"{pounds(amount_pence)} is more than the {pounds(outstanding)} outstanding"
            f" on invoice {number}{credited}",
            "amount",
        )
    return outstanding - amount_pence


def allocate_credit(credit_pence: int, balances: list[int]) -> list[int]:
    """How much of a credit to set against each invoice, in order, never above its balance.

    What is left over (``credit_pence − sum``) stays on the member's account: it is
    owed to the member, to refund or to set against a later invoice.
    """
    if credit_pence < 0:
        raise ValueError("a credit is never negative")
    allocations = []
    left = credit_pence
    for owed in balances:
        amount = min(left, max(owed, 0))
        allocations.append(amount)
        left -= amount
    return allocations


def pounds(pence: int) -> str:
    """'£1,234.56', exact for any integer (no float on the way)."""
    sign = "-" if pence < 0 else ""
    whole, part = divmod(abs(pence), 100)
    return f"{sign}£{whole:,}.{part:02d}"


def reminder_stages_due(
    *, due_on: date, today: date, already_sent: set[str]
) -> list[tuple[str, int]]:
    """The reminder stages whose day has come and that were not sent yet, in order.

    A sweep that missed days sends only the latest stage due, so a member
    never gets two reminders for one invoice on one day.
    """
    overdue_days = (today - due_on).days
    due = [(stage, days) for stage, days in REMINDER_STAGES if overdue_days >= days]
    if not due or due[-1][0] in already_sent:
        return []
    return [due[-1]]


def stage_index(stage: str) -> int:
    return [name for name, _ in REMINDER_STAGES].index(stage)


def check_year_has_prices(catalog: Catalog, year: int) -> None:
    catalog.check_year(year)
