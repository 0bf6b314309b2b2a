"""Facts from subscriptions: the read model of memberships that prices bookings.

The three facts are learnt by one ``Learner``: a batch of them, live or in a
rebuild, is read in one query and written in one statement, each membership
taking the facts about it in stream order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from contracts import Envelope
from contracts.subscriptions_v1 import MembershipChanged, MembershipEnded, MembershipStarted
from kernel.applier import Learner
from services.events import store

MembershipFact = MembershipStarted | MembershipChanged | MembershipEnded


def learnt(fact: MembershipFact, known: store.MembershipRow | None) -> store.MembershipRow:
    """The view's row for the membership once ``fact`` is taken in, ``known`` the row before.

    A start records the membership; a change keeps its dates and takes the new
    tier; an end gives the last day at the member price.
    """
    if isinstance(fact, MembershipStarted):
        tier, starts_on, ends_on = fact.tier, fact.starts_on, None
    elif isinstance(fact, MembershipChanged):
        tier = fact.new_tier
        starts_on, ends_on = (
            (known["starts_on"], known["ends_on"]) if known else (fact.effective_on, None)
        )
    else:
        tier, starts_on = (
            (known["tier"], known["starts_on"]) if known else ("unknown", fact.ends_on)
        )
        ends_on = fact.ends_on
    return store.MembershipRow(
        membership_id=fact.membership_id,
        member_id=fact.member_id,
        member_name=fact.member_name,
        tier=tier,
        starts_on=starts_on,
        ends_on=ends_on,
    )


async def learn_memberships(session: AsyncSession, facts: Sequence[tuple[Any, Envelope]]) -> None:
    """Bring the view up to date with ``facts``, in order: one read, one write."""
    changing = {fact.membership_id for fact, _ in facts if not isinstance(fact, MembershipStarted)}
    rows = await store.membership_rows(session, changing)
    touched: dict[str, store.MembershipRow] = {}
    for fact, _ in facts:
        row = learnt(fact, rows.get(fact.membership_id))
        rows[fact.membership_id] = touched[fact.membership_id] = row
    await store.record_memberships(session, list(touched.values()))


# Remember the membership, so bookings from its organisation get the member price;
# keep its tier (and name) up to date; from the day after it ends, the organisation's
# bookings pay the non-member price.
on_membership_started = Learner(learn_memberships)
on_membership_changed = Learner(learn_memberships)
on_membership_ended = Learner(learn_memberships)
