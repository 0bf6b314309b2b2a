"""What the books take: dates inside a sane window, amounts under a ceiling, and
invoicing runs not dated far in the past. Free of I/O.

Without these, a run dated 0001-01-01 issued real, numbered invoices that were
overdue on arrival, and an event priced at 2^62 pence was billed. A value outside
them is refused with ``out_of_range`` naming the field, and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from services.subscriptions.domain.billing import BillingError, pounds

OUT_OF_RANGE = "out_of_range"


@dataclass(frozen=True)
class Bounds:
    """The window of dates, the largest amount and the backdating grace the books accept."""

    earliest_year: int = 2000
    latest_year: int = 2100
    max_amount_pence: int = 100_000_000  # £1,000,000.00
    run_backdate_days: int = 31

    def check_date(self, day: date, field: str) -> None:
        """Raise BillingError unless ``day`` falls in the years the books take."""
        if not self.earliest_year <= day.year <= self.latest_year:
            raise BillingError(
                OUT_OF_RANGE,
                f"{_day(day)} is outside the dates the books take "
                f"(1 January {self.earliest_year} to 31 December {self.latest_year})",
                field,
            )

    def check_year(self, year: int, field: str = "year") -> None:
        """Raise BillingError unless financial ``year`` lies wholly in the window."""
        if not self.earliest_year <= year < self.latest_year:
            raise BillingError(
                OUT_OF_RANGE,
                f"financial year {year} is outside the years the books take "
                f"({self.earliest_year} to {self.latest_year - 1})",
                field,
            )

    def check_amount(self, pence: int, field: str) -> None:
        """Raise BillingError if ``pence`` is above the ceiling for one amount."""
        if pence > self.max_amount_pence:
            raise BillingError(
                OUT_OF_RANGE,
                f"{pounds(pence)} is above the largest amount the books take in one go "
                f"({pounds(self.max_amount_pence)}); check the figure",
                field,
            )

    def check_run_date(self, issued_on: date, today: date, field: str = "issued_on") -> None:
        """Raise BillingError unless a run's issue date is in the window and no more than
        the grace period in the past: its invoices would otherwise be overdue on arrival,
        or backdated past their tax point."""
        self.check_date(issued_on, field)
        earliest = today - timedelta(days=self.run_backdate_days)
        if issued_on < earliest:
            raise BillingError(
                OUT_OF_RANGE,
                f"an invoicing run dated {_day(issued_on)} is more than "
                f"{self.run_backdate_days} days in the past (today is {_day(today)}); "
                f"date it no earlier than {_day(earliest)}",
                field,
            )


def _day(day: date) -> str:
    return f"{day.day} {day:%B} {day.year:04d}"
