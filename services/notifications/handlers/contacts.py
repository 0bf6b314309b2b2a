"""The contact commands (add, list, show, subscribe, unsubscribe, forget) and resend.

Forgetting a contact here is what an erasure request does in this service
(``people.forget``); an erasure request also reaches the other services.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, or_, select

from contracts.notifications_v1 import (
    AddContact,
    ForgetContact,
    ListContacts,
    ResendDelivery,
    ShowContact,
    Subscribe,
    Unsubscribe,
)
from kernel.commands import CommandContext, Refused
from services.notifications import domain, store, wakeup
from services.notifications.handlers.people import forget


def _mobile(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return domain.normalise_mobile(text)
    except domain.InvalidPhone as bad:
        raise Refused("invalid", str(bad), "mobile") from None


def known_topics(topics: list[str]) -> list[str]:
    """The topics, each checked; refused (not_found, field topics) if one is unknown."""
    try:
        return [domain.check_topic(topic) for topic in topics]
    except domain.UnknownTopic as unknown:
        raise Refused("not_found", str(unknown), "topics") from None


async def _person(ctx: CommandContext, ref: str) -> store.Known:
    known = await store.find_person(ctx.session, ref)
    if known is None:
        raise Refused("not_found", f"there is no contact {ref!r}", "contact")
    return known


async def _describe(ctx: CommandContext, known: store.Known) -> dict[str, Any]:
    person = known.reachable
    learnt = known.entry
    return {
        "contact_id": person.contact_id,
        "email": person.email,
        "name": person.name,
        "organisation": (known.contact and known.contact.organisation)
        or (learnt and learnt.organisation),
        "mobile": person.mobile,
        "email_consent": person.email_consent,
        "sms_consent": person.sms_consent,
        "source": known.contact.source if known.contact else "facts",
        "learnt_from": learnt.sources.split(",") if learnt else [],
        "topics": await store.topics_of(ctx.session, known.contact.id) if known.contact else [],
    }


async def add_contact(command: AddContact, ctx: CommandContext) -> dict[str, Any]:
    """Add a contact or update the one with this email; its topics are added to."""
    mobile = _mobile(command.mobile)
    topics = known_topics(command.topics)
    email = str(command.email).lower()
    if await store.is_forgotten(ctx.session, email):
        # They asked to be forgotten; adding them back is a new, explicit request.
        await ctx.session.execute(
            delete(store.Forgotten).where(store.Forgotten.digest == store.forgotten_digest(email))
        )
    known = await store.find_person(ctx.session, email)
    if command.sms_consent and not (mobile or (known and known.reachable.mobile)):
        raise Refused("invalid", "SMS consent needs a mobile number", "mobile")
    contact = await store.own_record(ctx.session, email, source="cli")
    contact.name = command.name or contact.name
    contact.organisation = command.organisation or contact.organisation
    contact.mobile = mobile or contact.mobile
    contact.email_consent = command.email_consent
    contact.sms_consent = command.sms_consent
    await ctx.session.flush()
    await store.subscribe(ctx.session, contact, topics)
    return await _describe(ctx, await _person(ctx, email))


async def list_contacts(command: ListContacts, ctx: CommandContext) -> dict[str, Any]:
    """One page of everyone known, from their own record or the directory, by email; or of a
    topic's subscribers. ``next`` is the cursor of the following page, None after the last."""
    after = command.after.lower() if command.after else ""
    # One more than the page, to know whether another follows.
    own = (
        select(store.Contact.email)
        .where(store.Contact.email > after)
        .order_by(store.Contact.email)
        .limit(command.limit + 1)
    )
    if command.search:
        own = own.where(_mentions(command.search, store.Contact))
    if command.topic:
        known_topics([command.topic])
        own = own.join(store.ContactTopic).where(store.ContactTopic.topic == command.topic)
        emails = set(await ctx.session.scalars(own))
    else:
        learnt = (
            select(store.DirectoryEntry.email)
            .where(store.DirectoryEntry.email > after)
            .order_by(store.DirectoryEntry.email)
            .limit(command.limit + 1)
        )
        if command.search:
            learnt = learnt.where(_mentions(command.search, store.DirectoryEntry))
        emails = set(await ctx.session.scalars(own))
        emails |= set(await ctx.session.scalars(learnt))
    ordered = sorted(emails)
    page = ordered[: command.limit]
    people = [await _person(ctx, email) for email in page]
    return {
        "contacts": [await _describe(ctx, known) for known in people],
        "next": page[-1] if len(ordered) > command.limit else None,
    }


def _mentions(search: str, table: type[store.Contact] | type[store.DirectoryEntry]) -> Any:
    """Rows whose email, name or organisation holds ``search`` in any case (``%`` and
    ``_`` taken literally)."""
    wanted = search.lower()
    return or_(
        *(
            func.lower(column).contains(wanted, autoescape=True)
            for column in (table.email, table.name, table.organisation)
        )
    )


async def show_contact(command: ShowContact, ctx: CommandContext) -> dict[str, Any]:
    known = await _person(ctx, command.contact)
    deliveries = await ctx.session.scalars(
        select(store.Delivery)
        .where(store.Delivery.recipient.in_(known.addresses))
        .order_by(store.Delivery.created_at.desc())
        .limit(20)
    )
    return {
        **await _describe(ctx, known),
        "deliveries": [
            {
                "delivery_id": d.id,
                "template": d.template,
                "channel": d.channel,
                "status": d.status,
                "attempts": d.attempts,
                "segments": d.segments,
                "created_at": d.created_at.isoformat(),
                "last_error": d.last_error,
            }
            for d in deliveries
        ],
    }


async def subscribe(command: Subscribe, ctx: CommandContext) -> dict[str, Any]:
    known = await _person(ctx, command.contact)
    topics = known_topics(command.topics)
    if "sms" in command.channels and not known.reachable.mobile:
        raise Refused("invalid", "SMS consent needs a mobile number: add one first", "channels")
    contact = await store.own_record(ctx.session, known.reachable.email, source="facts")
    if "sms" in command.channels:
        contact.sms_consent = True
    if "email" in command.channels:
        contact.email_consent = True
    await store.subscribe(ctx.session, contact, topics)
    return await _describe(ctx, await _person(ctx, contact.email))


async def unsubscribe(command: Unsubscribe, ctx: CommandContext) -> dict[str, Any]:
    known = await _person(ctx, command.contact)
    topics = known_topics(command.topics)
    contact = await store.own_record(ctx.session, known.reachable.email, source="facts")
    if "sms" in command.channels:
        contact.sms_consent = False
    if "email" in command.channels:
        contact.email_consent = False
    await store.unsubscribe(ctx.session, contact, topics)
    return await _describe(ctx, await _person(ctx, contact.email))


async def forget_contact(command: ForgetContact, ctx: CommandContext) -> dict[str, Any]:
    """Forget one contact here, as an erasure request does (``people.forget``)."""
    known = await _person(ctx, command.contact)
    person = await store.person_by_email(ctx.session, known.reachable.email or "")
    erased = await forget(ctx.session, person, ctx.publish)
    return {
        "contact_id": known.reachable.contact_id,
        "forgotten": True,
        "ledger_rows_scrubbed": erased.deliveries,
    }


async def resend_delivery(command: ResendDelivery, ctx: CommandContext) -> dict[str, Any]:
    """Put a failed delivery back in line, with its retries afresh."""
    delivery = await store.delivery_for_update(ctx.session, command.delivery_id)
    if delivery is None:
        raise Refused("not_found", f"there is no delivery {command.delivery_id}", "delivery_id")
    if delivery.status != "failed":
        raise Refused(
            "conflict",
            f"only a failed delivery can be resent; this one is {delivery.status}",
            "delivery_id",
        )
    if domain.is_forgotten_recipient(delivery.recipient):
        raise Refused("conflict", "its recipient asked to be forgotten", "delivery_id")
    delivery.status = "pending"
    delivery.next_attempt_at = datetime.now(UTC)
    wakeup.on_commit(ctx.session)
    delivery.claim = None
    delivery.attempts_before_resend = delivery.attempts
    await ctx.record_action(  # not its recipient: the audit names no one
        "resend",
        target=delivery.id,
        filters={"channel": delivery.channel, "template": delivery.template},
        result={"status": delivery.status, "attempts": delivery.attempts},
    )
    return {
        "delivery_id": delivery.id,
        "recipient": delivery.recipient,
        "channel": delivery.channel,
        "template": delivery.template,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_error": delivery.last_error,
    }
