"""Membership rules, free of I/O."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date


class MembershipError(Exception):
    """Raised when a membership request breaks a partnership rule."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


@dataclass(frozen=True)
class Tier:
    code: str
    label: str


# The reference partnership's tiers; dated price lists arrive with invoicing.
REFERENCE_TIERS: dict[str, Tier] = {
    tier.code: tier
    for tier in (
        Tier("upper-tier", "Upper-tier council (metropolitan, county, unitary)"),
        Tier("district", "District council"),
        Tier("public-service", "Police, fire or primary-care body"),
    )
}


@dataclass(frozen=True)
class NewMembership:
    member_id: str
    membership_id: str
    name: str
    tier: str
    billing_email: str
    starts_on: date


def join(
    *,
    name: str,
    tier: str,
    billing_email: str,
    joined_on: date,
    name_taken: bool,
    tiers: dict[str, Tier] = REFERENCE_TIERS,
) -> NewMembership:
    """A new member at ``tier`` from ``joined_on``; raises MembershipError if it may not join."""
    if tier not in tiers:
        known = ", ".join(sorted(tiers))
        raise MembershipError("invalid", f"unknown tier {tier!r}; the tiers are {known}", "tier")
    if name_taken:
        raise MembershipError("conflict", f"{name} is already a member", "name")
    return NewMembership(
        member_id=str(uuid.uuid4()),
        membership_id=str(uuid.uuid4()),
        name=name,
        tier=tier,
        billing_email=billing_email.lower(),
        starts_on=joined_on,
    )
