"""Membership rules: joining, changing tier and leaving, free of I/O."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from services.subscriptions.domain.catalog import REFERENCE_CATALOG, Tier, financial_year


class MembershipError(Exception):
    """Raised when a membership request breaks a partnership rule."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


REFERENCE_TIERS: Mapping[str, Tier] = REFERENCE_CATALOG.tiers


@dataclass(frozen=True)
class NewMembership:
    member_id: str
    membership_id: str
    name: str
    tier: str
    billing_email: str
    starts_on: date


def check_tier(tier: str, tiers: Mapping[str, Tier], on: date | None = None) -> None:
    """Raise MembershipError unless ``tier`` is known and, ``on`` that day, still offered."""
    if tier not in tiers:
        known = ", ".join(sorted(tiers))
        raise MembershipError("invalid", f"unknown tier {tier!r}; the tiers are {known}", "tier")
    ended = tiers[tier].ended_in(financial_year(on)) if on is not None else None
    if ended is not None:
        raise MembershipError(
            "invalid", f"tier {tier!r} is no longer offered: its prices ended in {ended}", "tier"
        )


def join(
    *,
    name: str,
    tier: str,
    billing_email: str,
    joined_on: date,
    name_taken: bool,
    tiers: Mapping[str, Tier] = REFERENCE_TIERS,
) -> NewMembership:
    """A new member at ``tier`` from ``joined_on``; raises MembershipError if it may not join."""
    check_tier(tier, tiers, joined_on)
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


def check_tier_change(
    *,
    current_tier: str,
    new_tier: str,
    starts_on: date,
    ends_on: date | None,
    effective_on: date,
    tiers: Mapping[str, Tier],
) -> None:
    """Raise MembershipError unless the member may move to ``new_tier`` on ``effective_on``.

    ``current_tier`` is the tier the member has on that day, whatever it has today:
    changes take effect on their date. A member that leaves may change tier up to its
    last day.
    """
    check_tier(new_tier, tiers, effective_on)
    if ends_on is not None and effective_on > ends_on:
        raise MembershipError("ended", f"the membership ends on {ends_on}", "member")
    if new_tier == current_tier:
        raise MembershipError(
            "invalid", f"the member is already at the {new_tier} tier on {effective_on}", "tier"
        )
    if effective_on < starts_on:
        raise MembershipError(
            "invalid",
            f"the change cannot take effect before the membership starts ({starts_on})",
            "effective_on",
        )


def check_leaving(*, starts_on: date, ends_on: date | None, leaves_on: date) -> None:
    """Raise MembershipError unless the member may leave on ``leaves_on`` (its last day)."""
    if ends_on is not None:
        raise MembershipError("ended", f"the membership already ended on {ends_on}", "member")
    if leaves_on < starts_on:
        raise MembershipError(
            "invalid", f"a member cannot leave before it joined ({starts_on})", "leaves_on"
        )


def check_rejoining(*, name: str, ends_on: date | None, joined_on: date) -> None:
    """Raise MembershipError unless a member whose last membership ends on ``ends_on``
    may start a new one on ``joined_on``."""
    if ends_on is None:
        raise MembershipError(
            "conflict", f"{name} is a member; it can rejoin only once it has left", "member"
        )
    if joined_on <= ends_on:
        raise MembershipError(
            "invalid",
            f"{name} is a member until {ends_on}; it can rejoin from the day after",
            "joined_on",
        )
