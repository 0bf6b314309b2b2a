"""What each fact teaches the contact directory: the read model `vestry rebuild
notifications` drops and replays. These handlers only learn; the live handlers in
``facts`` call them first and then plan deliveries.

Every learner here is the one ``Learner``: a rebuild hands it a whole batch of
facts, whatever their types, and the directory learns them in a few statements.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from contracts import Envelope, Message
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
from kernel.applier import Handler, Learner
from services.notifications import domain, store
from services.notifications.directory import Sighting, stamp

log = logging.getLogger(__name__)


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


def _booker(at: str, booker: Booker, organisation: str | None) -> Sighting:
    return Sighting(
        email=str(booker.email),
        source="booking",
        stamp=at,
        name=booker.name,
        organisation=organisation,
        mobile=booker_mobile(booker),
        sms_opt_in=booker.sms,
    )


def sightings(fact: Any, envelope: Envelope) -> Iterator[Sighting]:
    """The people ``fact`` names, with what it says of each."""
    at = stamp(envelope.occurred_at, envelope.id)
    if isinstance(fact, MembershipStarted):
        yield Sighting(str(fact.billing_email), "membership", at, organisation=fact.member_name)
    elif isinstance(fact, InvoiceIssued | InvoiceOverdue):
        yield Sighting(str(fact.billing_email), "billing", at, organisation=fact.billed_name)
    elif isinstance(fact, InvoicePaid):
        yield Sighting(str(fact.billing_email), "billing", at)
    elif isinstance(fact, BookingConfirmed | BookingPromoted | BookingWaitlisted | ReminderDue):
        yield _booker(at, fact.booker, fact.organisation_name)
    elif isinstance(fact, BookingCancelled):
        if fact.booker is not None:  # older facts did not carry the booker
            yield _booker(at, fact.booker, None)
    elif isinstance(fact, EventChanged):
        for attendee in fact.attendees:
            yield _booker(at, attendee.booker, None)
    else:
        raise TypeError(f"the directory learns nothing from {type(fact).__name__}")


async def learn_facts(session: AsyncSession, facts: Sequence[tuple[Any, Envelope]]) -> None:
    """Take in, in order, the people ``facts`` name."""
    await store.learn(
        session, [seen for fact, envelope in facts for seen in sightings(fact, envelope)]
    )


learn_member = learn_billed = learn_payer = Learner(learn_facts)
learn_booker = learn_canceller = learn_attendees = Learner(learn_facts)

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
