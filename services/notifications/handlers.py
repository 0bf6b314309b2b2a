"""Notifications' fact handlers: one function per fact."""

from __future__ import annotations

from contracts.subscriptions_v1 import MembershipStarted
from kernel.consumer import HandlerContext
from services.notifications import domain, store


async def on_membership_started(fact: MembershipStarted, ctx: HandlerContext) -> None:
    """Keep the billing contact and plan the welcome email."""
    await store.remember_contact(
        ctx.session,
        email=str(fact.billing_email),
        name=None,
        organisation=fact.member_name,
        source="membership",
    )
    await store.plan_delivery(ctx.session, ctx.envelope.id, domain.welcome(fact))
