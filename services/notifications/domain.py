"""Who hears what, by which channel: rules free of I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.subscriptions_v1 import MembershipStarted

RETRY_DELAYS_S = (30.0, 120.0, 600.0, 1800.0)
MAX_ATTEMPTS = len(RETRY_DELAYS_S) + 1


@dataclass(frozen=True)
class PlannedDelivery:
    """One message to one recipient on one channel, for one cause."""

    recipient: str
    channel: str
    template: str
    context: dict[str, Any]


def welcome(fact: MembershipStarted) -> PlannedDelivery:
    """A new member's billing contact is welcomed by email."""
    return PlannedDelivery(
        recipient=str(fact.billing_email),
        channel="email",
        template="welcome",
        context={
            "member_name": fact.member_name,
            "tier": fact.tier,
            "starts_on": fact.starts_on.isoformat(),
        },
    )


def retry_delay(attempts: int) -> float | None:
    """Seconds before the next attempt after ``attempts`` failed ones, or None to give up."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return RETRY_DELAYS_S[attempts - 1]
