"""Paying an invoice by card: what a provider's payment status means for the invoice,
and what may be paid that way. Pure rules; the provider's API is ``govuk_pay``'s."""

from __future__ import annotations

from typing import Literal

Outcome = Literal["paid", "in_progress", "failed", "cancelled", "expired", "error"]

# GOV.UK Pay takes at most £100,000.00 in one payment.
MOST_BY_CARD_PENCE = 10_000_000

# GOV.UK Pay's statuses of a payment whose journey has not ended.
IN_PROGRESS = frozenset({"created", "started", "submitted", "capturable"})

# Why a payment failed, by GOV.UK Pay's code (its "errors caused by payment statuses").
EXPIRED = "P0020"  # not completed within 90 minutes of being created
CANCELLED_BY_PAYER = "P0030"
CANCELLED_BY_SERVICE = "P0040"


def outcome_of(status: str, code: str | None = None) -> Outcome:
    """What a payment's status says happened: paid only on ``success``; in progress until
    its journey ends; otherwise no money was taken, and the code says why."""
    if status == "success":
        return "paid"
    if status in IN_PROGRESS:
        return "in_progress"
    if status == "cancelled" or code in (CANCELLED_BY_PAYER, CANCELLED_BY_SERVICE):
        return "cancelled"
    if code == EXPIRED:
        return "expired"
    if status == "error":
        return "error"
    return "failed"


def why_not_by_card(*, status: str, outstanding_pence: int) -> str | None:
    """Why an invoice cannot be paid by card now, in words for the person; None if it can."""
    if status == "void":
        return "This invoice was cancelled (void): there is nothing to pay"
    if outstanding_pence <= 0:
        if status == "credited":
            return "This invoice is settled by a credit note: there is nothing to pay"
        return "This invoice is paid: there is nothing more to pay"
    if outstanding_pence > MOST_BY_CARD_PENCE:
        return (
            "This invoice is for more than can be paid by card (£100,000): pay it by bank transfer"
        )
    return None
