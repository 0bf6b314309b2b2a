"""A member's account and the partnership's debt by age, free of I/O.

A statement lists what a member was charged (invoices), what was taken off
(credit notes) and what it paid, in date order, each with the balance after it.
Its balance is the sum of its invoices less its credit notes less its payments:
what the member owes, or, below zero, what it has in credit. Void invoices were
never owed and are left out.

Debt is aged by days past the invoice's due date: ``not_due`` (due today or
later), then 1–30, 31–60, 61–90 and over 90 days overdue.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Literal

AGE_BUCKETS: tuple[str, ...] = ("not_due", "1-30", "31-60", "61-90", "over_90")

EntryKind = Literal["invoice", "credit_note", "payment"]

# On one day: what was charged, then what was credited, then what was paid.
_ORDER: dict[str, int] = {"invoice": 0, "credit_note": 1, "payment": 2}


def age_bucket(due_on: date, on: date) -> str:
    """Which of ``AGE_BUCKETS`` a debt due on ``due_on`` falls in, as at ``on``."""
    days = (on - due_on).days
    if days <= 0:
        return "not_due"
    if days <= 30:
        return "1-30"
    if days <= 60:
        return "31-60"
    if days <= 90:
        return "61-90"
    return "over_90"


def aged(debts: Iterable[tuple[date, int]], on: date) -> dict[str, int]:
    """Outstanding amounts ``(due_on, pence)`` summed by age as at ``on``; every bucket
    is present, and only amounts above zero count."""
    buckets = dict.fromkeys(AGE_BUCKETS, 0)
    for due_on, pence in debts:
        if pence > 0:
            buckets[age_bucket(due_on, on)] += pence
    return buckets


@dataclass(frozen=True)
class Entry:
    """One line of a statement: a document issued, or a payment received."""

    on: date
    kind: EntryKind
    number: str  # the document's number; for a payment, the invoice it paid
    description: str
    pence: int  # always positive: an invoice charges it, the others take it off
    reference: str | None = None  # a payment's bank reference; a credit note's invoice

    @property
    def debit(self) -> int:
        return self.pence if self.kind == "invoice" else 0

    @property
    def credit(self) -> int:
        return 0 if self.kind == "invoice" else self.pence


@dataclass(frozen=True)
class Statement:
    """Entries in date order, each with the running balance after it."""

    lines: tuple[tuple[Entry, int], ...]

    @property
    def invoiced(self) -> int:
        return sum(entry.debit for entry, _ in self.lines)

    @property
    def credited(self) -> int:
        return sum(entry.pence for entry, _ in self.lines if entry.kind == "credit_note")

    @property
    def paid(self) -> int:
        return sum(entry.pence for entry, _ in self.lines if entry.kind == "payment")

    @property
    def balance(self) -> int:
        """Invoices less credit notes less payments: owed if above zero, in credit below."""
        return self.invoiced - self.credited - self.paid


def statement(entries: Iterable[Entry]) -> Statement:
    """The entries in date order (on one day: invoices, credit notes, payments; then by
    number), each with the balance after it."""
    ordered = sorted(entries, key=lambda e: (e.on, _ORDER[e.kind], e.number, e.reference or ""))
    balance = 0
    lines = []
    for entry in ordered:
        balance += entry.debit - entry.credit
        lines.append((entry, balance))
    return Statement(tuple(lines))
