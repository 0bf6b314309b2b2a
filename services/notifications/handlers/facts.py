"""Handlers of the facts other services publish: learn the people a fact names (the
directory, through ``learning``), then plan the deliveries the rules in ``domain``
ask for, one ledger row per (fact, recipient, channel). They send nothing
themselves: the sender does."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from contracts.events_v1 import (
    BookingCancelled,
    BookingConfirmed,
    BookingPromoted,
    BookingWaitlisted,
    CalendarEntry,
    EventChanged,
    ReminderDue,
    Schedule,
)
from contracts.subscriptions_v1 import (
    CreditNoteIssued,
    InvoiceIssued,
    InvoiceOverdue,
    InvoicePaid,
    MembershipStarted,
)
from kernel.consumer import HandlerContext
from services.notifications import domain, store
from services.notifications.domain import LONDON, day, pounds, when
from services.notifications.handlers import learning


async def _plan(ctx: HandlerContext, planned: list[domain.PlannedDelivery]) -> None:
    for delivery in planned:
        await store.plan_delivery(ctx.session, ctx.envelope.id, delivery)


# Subscriptions' facts


async def on_membership_started(fact: MembershipStarted, ctx: HandlerContext) -> None:
    """Keep the billing contact and plan the welcome email."""
    await learning.learn_member(fact, ctx)
    if await store.person(ctx.session, str(fact.billing_email)) is not None:
        await store.plan_delivery(ctx.session, ctx.envelope.id, domain.welcome(fact))


async def on_invoice_issued(fact: InvoiceIssued, ctx: HandlerContext) -> None:
    """The invoice goes to its billing contact by email, with the document attached."""
    await learning.learn_billed(fact, ctx)
    person = await store.person(ctx.session, str(fact.billing_email))
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


# Why a credit note was issued, as its email says it.
CREDIT_REASONS = {
    "tier_change": "the months at your previous tier after your change of tier",
    "leaver_refund": "the unused months of your membership",
    "booking_refund": "a cancelled booking",
}


async def on_credit_note_issued(fact: CreditNoteIssued, ctx: HandlerContext) -> None:
    """Each credit note goes to its billing contact by email, saying what it credits."""
    person = await store.person(ctx.session, str(fact.billing_email))
    if person is None:
        return
    context = {
        "number": fact.number,
        "billed_name": fact.billed_name,
        "credits_invoice": fact.credits_invoice,
        "reason": CREDIT_REASONS[fact.purpose],
        "issued_on": day(fact.issued_on),
        "lines": [
            {"description": line.description, "net": pounds(line.net), "vat": pounds(line.vat)}
            for line in fact.lines
        ],
        "net": pounds(fact.net),
        "vat": pounds(fact.vat),
        "gross": pounds(fact.gross),
    }
    await _plan(
        ctx, domain.transactional(person, "credit_note_issued", context, sms_template=False)
    )


async def on_invoice_paid(fact: InvoicePaid, ctx: HandlerContext) -> None:
    """A payment is acknowledged to the billing contact."""
    await learning.learn_payer(fact, ctx)
    person = await store.person(ctx.session, str(fact.billing_email))
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
    await learning.learn_billed(fact, ctx)
    person = await store.person(ctx.session, str(fact.billing_email))
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
    fit_sms: domain.SmsFit | None = None,
) -> None:
    await learning.learn_booker(fact, ctx)
    person = await store.person(ctx.session, str(fact.booker.email))
    if person is None:
        return
    context = {
        "name": fact.booker.name,
        "event_title": fact.event_title,
        "reference": fact.reference,
        **extra,
    }
    await _plan(ctx, domain.transactional(person, template, context, fit_sms=fit_sms))


async def on_booking_confirmed(
    fact: BookingConfirmed, ctx: HandlerContext, fit_sms: domain.SmsFit | None = None
) -> None:
    """Confirmation by email with the calendar entry, and by SMS where consented."""
    extra = {**_event_context(fact.calendar), "price": _price(fact.price.amount_minor, fact)}
    await _tell_booker(ctx, fact, "booking_confirmed", extra, fit_sms)


async def on_booking_promoted(
    fact: BookingPromoted, ctx: HandlerContext, fit_sms: domain.SmsFit | None = None
) -> None:
    extra = {**_event_context(fact.calendar), "price": _price(fact.price.amount_minor, fact)}
    await _tell_booker(ctx, fact, "booking_promoted", extra, fit_sms)


async def on_booking_waitlisted(
    fact: BookingWaitlisted, ctx: HandlerContext, fit_sms: domain.SmsFit | None = None
) -> None:
    await _tell_booker(ctx, fact, "booking_waitlisted", {"position": fact.position}, fit_sms)


async def on_reminder_due(
    fact: ReminderDue, ctx: HandlerContext, fit_sms: domain.SmsFit | None = None
) -> None:
    extra = {**_event_context(fact.calendar), "hours_before": fact.hours_before}
    await _tell_booker(ctx, fact, "reminder", extra, fit_sms)


async def on_booking_cancelled(
    fact: BookingCancelled, ctx: HandlerContext, fit_sms: domain.SmsFit | None = None
) -> None:
    """The booker hears of a cancellation: theirs, or the event's (a cancelling .ics attached)."""
    if fact.booker is None:  # an older fact without the booker: nobody to tell
        return
    await learning.learn_canceller(fact, ctx)
    person = await store.person(ctx.session, str(fact.booker.email))
    if person is None:
        return
    context: dict[str, Any] = {
        "name": fact.booker.name,
        "event_title": fact.event_title or "your event",
        "reference": fact.reference,
        "was": fact.was,
        "why": fact.event_reason,
    }
    if fact.calendar is not None and fact.was == "confirmed":
        context.update(_event_context(fact.calendar))
    template = "event_cancelled" if fact.reason == "event_cancelled" else "booking_cancelled"
    await _plan(ctx, domain.transactional(person, template, context, fit_sms=fit_sms))


async def on_event_changed(
    fact: EventChanged, ctx: HandlerContext, fit_sms: domain.SmsFit | None = None
) -> None:
    """Every confirmed attendee of a moved event hears of it, with the updated calendar entry."""
    await learning.learn_attendees(fact, ctx)
    if not fact.moved:
        return
    for attendee in fact.attendees:
        person = await store.person(ctx.session, str(attendee.booker.email))
        if person is None:
            continue
        context = {
            "name": attendee.booker.name,
            "event_title": fact.title,
            "reference": attendee.reference,
            "changed": fact.changed,  # the fields' names, for operators' own templates
            "changes": what_changed(fact.changed, fact.calendar, fact.was),
            **_event_context(fact.calendar),
        }
        await _plan(ctx, domain.transactional(person, "event_changed", context, fit_sms=fit_sms))


def what_changed(
    changed: list[str], calendar: CalendarEntry, was: Schedule | None = None
) -> list[str]:
    """What an attendee should know of a change, in words, one sentence each.

    The fact names the fields that changed, gives the event as it now is and (since
    ``was`` was added) as it was, so each sentence says what the event is now and what
    it was ("It now starts at 11:00 on Tue 3 March 2026, was 10:00."). Changes an
    attendee holding a place need not hear of (capacity, prices, the booking deadline,
    the organisation limit) are left out.
    """
    said = []
    if "title" in changed:
        said.append(f"It is now called “{calendar.summary}”.")
    starts, ends = calendar.starts_at.astimezone(LONDON), calendar.ends_at.astimezone(LONDON)
    if "starts_at" in changed:
        sentence = f"It now starts at {_clock(starts)} on {_date(starts)}"
        if "ends_at" in changed:
            sentence += f" and ends at {_clock(ends)}"
            if ends.date() != starts.date():
                sentence += f" on {_date(ends)}"
        if was is not None:
            before = was.starts_at.astimezone(LONDON)
            day = "" if before.date() == starts.date() else f" on {_date(before)}"
            sentence += f", was {_clock(before)}{day}"
        said.append(sentence + ".")
    elif "ends_at" in changed:
        on = f" on {_date(ends)}" if ends.date() != starts.date() else ""
        sentence = f"It now ends at {_clock(ends)}{on}, starting at {_clock(starts)} as before"
        if was is not None:
            sentence += f"; it was to end at {_clock(was.ends_at.astimezone(LONDON))}"
        said.append(sentence + ".")
    if "venue" in changed:
        if calendar.location:
            moved_from = f", was {was.location}" if was is not None and was.location else ""
            said.append(f"It is now at {calendar.location}{moved_from}.")
        elif calendar.url:
            said.append("It no longer meets in person: it now takes place online.")
        else:
            said.append("It no longer has a venue.")
    if "online_url" in changed:
        if calendar.url:
            said.append(f"Its online link is now {calendar.url}")
        else:
            said.append("It no longer has an online link.")
    if "description" in changed:
        said.append("Its description has changed; the calendar entry has the new one.")
    return said


def _clock(moment: datetime) -> str:
    return f"{moment:%H:%M}"


def _date(moment: datetime) -> str:
    """``Tue 3 March 2026``."""
    return f"{moment:%a} {moment.day} {moment:%B %Y}"


def _price(amount_minor: int, fact: BookingConfirmed | BookingPromoted) -> str:
    if amount_minor == 0:
        return "free"
    return pounds(fact.price) + (" (member price)" if fact.member_price else "") + " + VAT"
