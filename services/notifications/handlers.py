"""Notifications' handlers: one function per fact it hears and per command it answers.

Fact handlers learn the people a fact names, then plan the deliveries the
rules in ``domain`` ask for: one ledger row per (fact, recipient, channel),
which the sender sends. They send nothing themselves.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import derived_message_id
from contracts.events_v1 import (
    Booker,
    BookingCancelled,
    BookingConfirmed,
    BookingPromoted,
    BookingWaitlisted,
    CalendarEntry,
    EventChanged,
    ReminderDue,
)
from contracts.notifications_v1 import (
    AddContact,
    BroadcastCompleted,
    BroadcastStatus,
    ForgetContact,
    ListContacts,
    SendBroadcast,
    ShowContact,
    Subscribe,
    Unsubscribe,
)
from contracts.subscriptions_v1 import InvoiceIssued, InvoiceOverdue, InvoicePaid, MembershipStarted
from kernel.commands import CommandContext, Refused
from kernel.consumer import HandlerContext
from kernel.outbox import Publisher
from kernel.settings import Settings
from services.notifications import domain, store
from services.notifications.domain import day, pounds, when
from services.notifications.segments import count_segments
from services.notifications.templates import TemplateProblem, Templates

log = logging.getLogger(__name__)


async def _plan(ctx: HandlerContext, planned: list[domain.PlannedDelivery]) -> None:
    for delivery in planned:
        await store.plan_delivery(ctx.session, ctx.envelope.id, delivery)


# Subscriptions' facts


async def on_membership_started(fact: MembershipStarted, ctx: HandlerContext) -> None:
    """Keep the billing contact and plan the welcome email."""
    contact = await store.remember_contact(
        ctx.session,
        email=str(fact.billing_email),
        name=None,
        organisation=fact.member_name,
        source="membership",
    )
    if contact is not None:
        await store.plan_delivery(ctx.session, ctx.envelope.id, domain.welcome(fact))


async def _billing_contact(
    ctx: HandlerContext, email: str, name: str | None
) -> domain.Reachable | None:
    contact = await store.remember_contact(
        ctx.session, email=email, name=None, organisation=name, source="billing"
    )
    return store.reachable(contact)


async def on_invoice_issued(fact: InvoiceIssued, ctx: HandlerContext) -> None:
    """The invoice goes to its billing contact by email, with the document attached."""
    person = await _billing_contact(ctx, str(fact.billing_email), fact.billed_name)
    if person is None:
        return
    context = {
        "number": fact.number,
        "billed_name": fact.billed_name,
        "year": fact.year,
        "issued_on": day(fact.issued_on),
        "due_on": day(fact.due_on),
        "lines": [
            {"description": line.description, "net": pounds(line.net), "vat": pounds(line.vat)}
            for line in fact.lines
        ],
        "net": pounds(fact.net),
        "vat": pounds(fact.vat),
        "gross": pounds(fact.gross),
    }
    await _plan(ctx, domain.transactional(person, "invoice_issued", context, sms_template=False))


async def on_invoice_paid(fact: InvoicePaid, ctx: HandlerContext) -> None:
    """A payment is acknowledged to the billing contact."""
    person = await _billing_contact(ctx, str(fact.billing_email), None)
    if person is None:
        return
    context = {
        "number": fact.number,
        "amount": pounds(fact.amount),
        "outstanding": pounds(fact.outstanding),
        "fully_paid": fact.fully_paid,
        "received_on": day(fact.received_on),
    }
    await _plan(ctx, domain.transactional(person, "payment_received", context, sms_template=False))


async def on_invoice_overdue(fact: InvoiceOverdue, ctx: HandlerContext) -> None:
    """An overdue reminder, worded by its stage, to the billing contact."""
    person = await _billing_contact(ctx, str(fact.billing_email), fact.billed_name)
    if person is None:
        return
    context = {
        "number": fact.number,
        "stage": fact.stage,
        "days_overdue": fact.days_overdue,
        "due_on": day(fact.due_on),
        "outstanding": pounds(fact.outstanding),
        "billed_name": fact.billed_name,
    }
    await _plan(ctx, domain.transactional(person, "invoice_overdue", context, sms_template=False))


# Events' facts


async def _booker(
    ctx: HandlerContext, booker: Booker, organisation: str | None
) -> domain.Reachable | None:
    """The booker as a contact; a mobile that is not valid is kept out (the email still goes)."""
    mobile = None
    if booker.phone:
        try:
            mobile = domain.normalise_mobile(booker.phone)
        except domain.InvalidPhone as bad:
            log.warning("booker %s: %s; no SMS", booker.email, bad)
    contact = await store.remember_contact(
        ctx.session,
        email=str(booker.email),
        name=booker.name,
        organisation=organisation,
        source="booking",
        mobile=mobile,
        sms_consent=booker.sms,
    )
    return store.reachable(contact)


def _event_context(calendar: CalendarEntry) -> dict[str, Any]:
    return {
        "starts": when(calendar.starts_at),
        "ends": when(calendar.ends_at),
        "where": calendar.location or calendar.url or "online",
        "calendar": calendar.model_dump(mode="json"),
    }


async def _tell_booker(
    ctx: HandlerContext,
    fact: BookingConfirmed | BookingPromoted | BookingWaitlisted | ReminderDue,
    template: str,
    extra: dict[str, Any],
) -> None:
    person = await _booker(ctx, fact.booker, fact.organisation_name)
    if person is None:
        return
    context = {
        "name": fact.booker.name,
        "event_title": fact.event_title,
        "reference": fact.reference,
        **extra,
    }
    await _plan(ctx, domain.transactional(person, template, context))


async def on_booking_confirmed(fact: BookingConfirmed, ctx: HandlerContext) -> None:
    """Confirmation by email with the calendar entry, and by SMS where consented."""
    extra = {**_event_context(fact.calendar), "price": _price(fact.price.amount_minor, fact)}
    await _tell_booker(ctx, fact, "booking_confirmed", extra)


async def on_booking_promoted(fact: BookingPromoted, ctx: HandlerContext) -> None:
    extra = {**_event_context(fact.calendar), "price": _price(fact.price.amount_minor, fact)}
    await _tell_booker(ctx, fact, "booking_promoted", extra)


async def on_booking_waitlisted(fact: BookingWaitlisted, ctx: HandlerContext) -> None:
    await _tell_booker(ctx, fact, "booking_waitlisted", {"position": fact.position})


async def on_reminder_due(fact: ReminderDue, ctx: HandlerContext) -> None:
    extra = {**_event_context(fact.calendar), "hours_before": fact.hours_before}
    await _tell_booker(ctx, fact, "reminder", extra)


async def on_booking_cancelled(fact: BookingCancelled, ctx: HandlerContext) -> None:
    """The booker hears of a cancellation: theirs, or the event's (a cancelling .ics attached)."""
    if fact.booker is None:  # an older fact without the booker: nobody to tell
        return
    person = await _booker(ctx, fact.booker, None)
    if person is None:
        return
    context: dict[str, Any] = {
        "name": fact.booker.name,
        "event_title": fact.event_title or "your event",
        "reference": fact.reference,
        "was": fact.was,
    }
    if fact.calendar is not None and fact.was == "confirmed":
        context.update(_event_context(fact.calendar))
    template = "event_cancelled" if fact.reason == "event_cancelled" else "booking_cancelled"
    await _plan(ctx, domain.transactional(person, template, context))


async def on_event_changed(fact: EventChanged, ctx: HandlerContext) -> None:
    """Every confirmed attendee of a moved event hears of it, with the updated calendar entry."""
    if not fact.moved:
        return
    for attendee in fact.attendees:
        person = await _booker(ctx, attendee.booker, None)
        if person is None:
            continue
        context = {
            "name": attendee.booker.name,
            "event_title": fact.title,
            "reference": attendee.reference,
            "changed": fact.changed,
            **_event_context(fact.calendar),
        }
        await _plan(ctx, domain.transactional(person, "event_changed", context))


def _price(amount_minor: int, fact: BookingConfirmed | BookingPromoted) -> str:
    if amount_minor == 0:
        return "free"
    return pounds(fact.price) + (" (member price)" if fact.member_price else "") + " + VAT"


# Commands: contacts


def _mobile(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return domain.normalise_mobile(text)
    except domain.InvalidPhone as bad:
        raise Refused("invalid", str(bad), "mobile") from None


def _topics(topics: list[str]) -> list[str]:
    try:
        return [domain.check_topic(topic) for topic in topics]
    except domain.UnknownTopic as unknown:
        raise Refused("not_found", str(unknown), "topics") from None


async def _contact(ctx: CommandContext, ref: str) -> store.Contact:
    contact = await store.find_contact(ctx.session, ref)
    if contact is None:
        raise Refused("not_found", f"there is no contact {ref!r}", "contact")
    return contact


async def _describe(ctx: CommandContext, contact: store.Contact) -> dict[str, Any]:
    return {
        "contact_id": contact.id,
        "email": contact.email,
        "name": contact.name,
        "organisation": contact.organisation,
        "mobile": contact.mobile,
        "email_consent": contact.email_consent,
        "sms_consent": contact.sms_consent,
        "source": contact.source,
        "topics": await store.topics_of(ctx.session, contact.id),
    }


async def add_contact(command: AddContact, ctx: CommandContext) -> dict[str, Any]:
    """Add a contact or update the one with this email; its topics are added to."""
    mobile = _mobile(command.mobile)
    topics = _topics(command.topics)
    email = str(command.email).lower()
    if await store.is_forgotten(ctx.session, email):
        # They asked to be forgotten; adding them back is a new, explicit request.
        await ctx.session.execute(
            delete(store.Forgotten).where(store.Forgotten.digest == domain.forgotten_digest(email))
        )
    contact = await store.contact_by_email(ctx.session, email)
    if command.sms_consent and not (mobile or (contact and contact.mobile)):
        raise Refused("invalid", "SMS consent needs a mobile number", "mobile")
    if contact is None:
        contact = store.Contact(id=derived_message_id("contact", email), email=email, source="cli")
        ctx.session.add(contact)
    contact.name = command.name or contact.name
    contact.organisation = command.organisation or contact.organisation
    contact.mobile = mobile or contact.mobile
    contact.email_consent = command.email_consent
    contact.sms_consent = command.sms_consent
    await ctx.session.flush()
    await store.subscribe(ctx.session, contact, topics)
    return await _describe(ctx, contact)


async def list_contacts(command: ListContacts, ctx: CommandContext) -> dict[str, Any]:
    query = select(store.Contact).order_by(store.Contact.email).limit(command.limit)
    if command.topic:
        _topics([command.topic])
        query = query.join(store.ContactTopic).where(store.ContactTopic.topic == command.topic)
    contacts = list(await ctx.session.scalars(query))
    return {"contacts": [await _describe(ctx, contact) for contact in contacts]}


async def show_contact(command: ShowContact, ctx: CommandContext) -> dict[str, Any]:
    contact = await _contact(ctx, command.contact)
    recipients = [address for address in (contact.email, contact.mobile) if address]
    deliveries = await ctx.session.scalars(
        select(store.Delivery)
        .where(store.Delivery.recipient.in_(recipients))
        .order_by(store.Delivery.created_at.desc())
        .limit(20)
    )
    return {
        **await _describe(ctx, contact),
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
    contact = await _contact(ctx, command.contact)
    topics = _topics(command.topics)
    if "sms" in command.channels:
        if not contact.mobile:
            raise Refused("invalid", "SMS consent needs a mobile number: add one first", "channels")
        contact.sms_consent = True
    if "email" in command.channels:
        contact.email_consent = True
    await store.subscribe(ctx.session, contact, topics)
    return await _describe(ctx, contact)


async def unsubscribe(command: Unsubscribe, ctx: CommandContext) -> dict[str, Any]:
    contact = await _contact(ctx, command.contact)
    topics = _topics(command.topics)
    if "sms" in command.channels:
        contact.sms_consent = False
    if "email" in command.channels:
        contact.email_consent = False
    await store.unsubscribe(ctx.session, contact, topics)
    return await _describe(ctx, contact)


async def forget_contact(command: ForgetContact, ctx: CommandContext) -> dict[str, Any]:
    contact = await _contact(ctx, command.contact)
    contact_id = contact.id
    broadcasts = await store.open_broadcasts_of(ctx.session, contact)
    scrubbed = await store.forget(ctx.session, contact)
    for broadcast_id in broadcasts:  # their last open row may have been this contact's
        await settle_broadcast(ctx.session, broadcast_id, ctx.publish)
    return {"contact_id": contact_id, "forgotten": True, "ledger_rows_scrubbed": scrubbed}


# Commands: broadcasts


class Broadcasts:
    """The broadcast commands, with the templates and settings they render and sign with."""

    def __init__(self, settings: Settings, templates: Templates) -> None:
        self._settings = settings
        self._templates = templates

    def check(self, command: SendBroadcast) -> None:
        """Refuse, before anything is planned, a message that could not be rendered."""
        try:
            self._templates.check(command.template, list(command.channels))
            text = ""
            probe = {
                **command.data,
                "recipient_name": "",
                "topic": command.topic,
                "unsubscribe_url": "https://example.invalid/unsubscribe",
            }
            for channel in command.channels:
                if channel == "email":
                    self._templates.email(command.template, probe)
                else:
                    text = self._templates.sms(command.template, probe)
        except TemplateProblem as problem:
            raise Refused(problem.code, str(problem), problem.field) from None
        if "sms" in command.channels:
            segments = count_segments(text).segments
            limit = self._settings.sms_segment_limit
            if segments > limit:
                raise Refused(
                    "invalid",
                    f"with this data the SMS takes {segments} parts; the limit is {limit}: "
                    "shorten the values, or send by email only",
                    "data",
                )

    async def send(self, command: SendBroadcast, ctx: CommandContext) -> dict[str, Any]:
        """Plan one delivery per consenting subscriber and channel, in this transaction."""
        _topics([command.topic])
        self.check(command)
        broadcast_id = derived_message_id("broadcast", ctx.envelope.id)
        existing = await ctx.session.get(store.Broadcast, broadcast_id)
        if existing is not None:  # the same command again: answer the first
            return _broadcast_answer(existing)
        settings = self._settings
        fan = domain.fan_out(
            await store.subscribers(ctx.session, command.topic),
            topic=command.topic,
            channels=list(dict.fromkeys(command.channels)),
            template=command.template,
            data=command.data,
            urgent=command.urgent,
            unsubscribe=lambda contact_id: domain.unsubscribe_url(
                settings.public_url, settings.unsubscribe_secret, contact_id, command.topic
            ),
        )
        broadcast = store.Broadcast(
            id=broadcast_id,
            topic=command.topic,
            template=command.template,
            channels=",".join(dict.fromkeys(command.channels)),
            urgent=command.urgent,
            recipients=fan.recipients,
            planned=len(fan.planned),
            skipped_for_consent=fan.skipped_for_consent,
            created_at=datetime.now(UTC),
        )
        ctx.session.add(broadcast)
        await store.plan_broadcast(ctx.session, broadcast_id, fan.planned)
        if not fan.planned:  # nobody to wait for: it is complete now
            await complete_broadcast(ctx.session, broadcast, ctx.publish, {"sent": 0, "failed": 0})
        return _broadcast_answer(broadcast)

    async def status(self, command: BroadcastStatus, ctx: CommandContext) -> dict[str, Any]:
        broadcast = await ctx.session.get(store.Broadcast, command.broadcast_id)
        if broadcast is None:
            raise Refused(
                "not_found", f"there is no broadcast {command.broadcast_id}", "broadcast_id"
            )
        counts = await store.broadcast_counts(ctx.session, broadcast.id)
        return {**_broadcast_answer(broadcast), **counts}


def _broadcast_answer(broadcast: store.Broadcast) -> dict[str, Any]:
    return {
        "broadcast_id": broadcast.id,
        "topic": broadcast.topic,
        "template": broadcast.template,
        "channels": broadcast.channels.split(","),
        "recipients": broadcast.recipients,
        "planned": broadcast.planned,
        "skipped_for_consent": broadcast.skipped_for_consent,
        "completed": broadcast.completed_at is not None,
    }


async def complete_broadcast(
    session: AsyncSession, broadcast: store.Broadcast, publish: Publisher, counts: dict[str, int]
) -> None:
    """Mark ``broadcast`` complete and publish its BroadcastCompleted fact, once."""
    broadcast.completed_at = datetime.now(UTC)
    await publish(
        BroadcastCompleted(
            broadcast_id=broadcast.id,
            topic=broadcast.topic,
            template=broadcast.template,
            channels=broadcast.channels.split(","),
            recipients=broadcast.recipients,
            sent=counts.get("sent", 0),
            failed=counts.get("failed", 0),
            skipped_for_consent=broadcast.skipped_for_consent,
        ),
        id=derived_message_id("broadcast", broadcast.id, "completed"),
    )


async def settle_broadcast(session: AsyncSession, broadcast_id: str, publish: Publisher) -> None:
    """Complete the broadcast if none of its rows is left to send."""
    broadcast = await session.get(store.Broadcast, broadcast_id)
    if broadcast is None or broadcast.completed_at is not None:
        return
    counts = await store.broadcast_counts(session, broadcast_id)
    if counts["pending"] == 0 and counts["deferred"] == 0:
        await complete_broadcast(session, broadcast, publish, counts)
