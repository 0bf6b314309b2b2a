"""What each fact teaches the contact directory: the read model `vestry rebuild
notifications` drops and replays. These handlers only learn; the live handlers in
``facts`` call them first and then plan deliveries."""

from __future__ import annotations

import logging

from contracts import Message
from contracts.events_v1 import (
    Booker,
    BookingCancelled,
    BookingConfirmed,
    BookingPromoted,
    BookingWaitlisted,
    EventChanged,
    ReminderDue,
)
from contracts.subscriptions_v1 import InvoiceIssued, InvoiceOverdue, InvoicePaid, MembershipStarted
from kernel.applier import Handler, HandlerContext
from services.notifications import domain, store
from services.notifications.directory import Sighting, stamp

log = logging.getLogger(__name__)


async def _learn(
    ctx: HandlerContext,
    email: str,
    source: str,
    *,
    name: str | None = None,
    organisation: str | None = None,
    mobile: str | None = None,
    sms_opt_in: bool = False,
) -> None:
    seen = Sighting(
        email=email,
        source=source,
        stamp=stamp(ctx.envelope.occurred_at, ctx.envelope.id),
        name=name,
        organisation=organisation,
        mobile=mobile,
        sms_opt_in=sms_opt_in,
    )
    await store.learn(ctx.session, seen)


async def learn_member(fact: MembershipStarted, ctx: HandlerContext) -> None:
    await _learn(ctx, str(fact.billing_email), "membership", organisation=fact.member_name)


async def learn_billed(fact: InvoiceIssued | InvoiceOverdue, ctx: HandlerContext) -> None:
    await _learn(ctx, str(fact.billing_email), "billing", organisation=fact.billed_name)


async def learn_payer(fact: InvoicePaid, ctx: HandlerContext) -> None:
    await _learn(ctx, str(fact.billing_email), "billing")


def booker_mobile(booker: Booker) -> str | None:
    """The booker's mobile in E.164; one that is not valid is kept out (the email still goes)."""
    if not booker.phone:
        return None
    try:
        return domain.normalise_mobile(booker.phone)
    except domain.InvalidPhone:
        # The refusal quotes the number: it is personal data, and not for the log.
        log.warning("a booker's mobile is not a valid number; no SMS")
        return None


async def _learn_booker(ctx: HandlerContext, booker: Booker, organisation: str | None) -> None:
    await _learn(
        ctx,
        str(booker.email),
        "booking",
        name=booker.name,
        organisation=organisation,
        mobile=booker_mobile(booker),
        sms_opt_in=booker.sms,
    )


async def learn_booker(
    fact: BookingConfirmed | BookingPromoted | BookingWaitlisted | ReminderDue,
    ctx: HandlerContext,
) -> None:
    await _learn_booker(ctx, fact.booker, fact.organisation_name)


async def learn_canceller(fact: BookingCancelled, ctx: HandlerContext) -> None:
    if fact.booker is not None:  # older facts did not carry the booker
        await _learn_booker(ctx, fact.booker, None)


async def learn_attendees(fact: EventChanged, ctx: HandlerContext) -> None:
    for attendee in fact.attendees:
        await _learn_booker(ctx, attendee.booker, None)


LEARNERS: dict[type[Message], Handler] = {
    MembershipStarted: learn_member,
    InvoiceIssued: learn_billed,
    InvoiceOverdue: learn_billed,
    InvoicePaid: learn_payer,
    BookingConfirmed: learn_booker,
    BookingPromoted: learn_booker,
    BookingWaitlisted: learn_booker,
    ReminderDue: learn_booker,
    BookingCancelled: learn_canceller,
    EventChanged: learn_attendees,
}
