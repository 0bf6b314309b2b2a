"""Facts from subscriptions: the read model of memberships that prices bookings."""

from __future__ import annotations

from contracts.subscriptions_v1 import MembershipChanged, MembershipEnded, MembershipStarted
from kernel.consumer import HandlerContext
from services.events import store


async def on_membership_started(fact: MembershipStarted, ctx: HandlerContext) -> None:
    """Remember the membership, so bookings from its organisation get the member price."""
    await store.record_membership(
        ctx.session,
        membership_id=fact.membership_id,
        member_id=fact.member_id,
        member_name=fact.member_name,
        tier=fact.tier,
        starts_on=fact.starts_on,
        ends_on=None,
    )


async def on_membership_changed(fact: MembershipChanged, ctx: HandlerContext) -> None:
    """Keep the tier (and the name) up to date; the membership goes on."""
    known = await store.membership(ctx.session, fact.membership_id)
    await store.record_membership(
        ctx.session,
        membership_id=fact.membership_id,
        member_id=fact.member_id,
        member_name=fact.member_name,
        tier=fact.new_tier,
        starts_on=known.starts_on if known else fact.effective_on,
        ends_on=known.ends_on if known else None,
    )


async def on_membership_ended(fact: MembershipEnded, ctx: HandlerContext) -> None:
    """From the day after ``ends_on`` the organisation's bookings pay the non-member price."""
    known = await store.membership(ctx.session, fact.membership_id)
    await store.record_membership(
        ctx.session,
        membership_id=fact.membership_id,
        member_id=fact.member_id,
        member_name=fact.member_name,
        tier=known.tier if known else "unknown",
        starts_on=known.starts_on if known else fact.ends_on,
        ends_on=fact.ends_on,
    )
