"""Events' fact handlers: one function per fact."""

from __future__ import annotations

from contracts.subscriptions_v1 import MembershipStarted
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
