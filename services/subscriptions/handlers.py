"""Subscriptions' command handlers: one function per command."""

from __future__ import annotations

from typing import Any

from contracts.subscriptions_v1 import JoinMember, MembershipStarted
from kernel.commands import CommandContext, Refused
from services.subscriptions import domain, store


async def join_member(command: JoinMember, ctx: CommandContext) -> dict[str, Any]:
    """Enrol a member and publish MembershipStarted in the same transaction."""
    try:
        new = domain.join(
            name=command.name,
            tier=command.tier,
            billing_email=str(command.billing_email),
            joined_on=command.joined_on,
            name_taken=await store.name_taken(ctx.session, command.name),
        )
    except domain.MembershipError as error:
        raise Refused(error.code, str(error), error.field) from None
    await store.add_membership(ctx.session, new, command.reference)
    await ctx.publish(
        MembershipStarted(
            membership_id=new.membership_id,
            member_id=new.member_id,
            member_name=new.name,
            tier=new.tier,
            billing_email=new.billing_email,
            starts_on=new.starts_on,
        )
    )
    return {"member_id": new.member_id, "membership_id": new.membership_id}
