"""The bookers' commands: book, cancel, show, list, check in."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import derived_message_id
from contracts.events_v1 import (
    BookingWaitlisted,
    BookPlace,
    CancelBooking,
    CheckIn,
    ListBookings,
    ShowBooking,
)
from kernel.commands import BatchAnswer, CommandContext, Refused
from services.events import domain, store
from services.events.facts import (
    booking_fields,
    booking_view,
    cancelled_booking_entry,
    event_view,
)
from services.events.handlers.places import (
    Places,
    attendance_recorded,
    cancel_one,
    find_booking,
    find_event,
    lock_booking,
    opening,
)
from services.events.store import Event, MembershipView, NewBooking


@dataclass(frozen=True, eq=False)  # each form is itself: a key by identity
class _Form:
    """A booker's form, its own fields checked, before the store is asked anything."""

    command: BookPlace
    context: CommandContext
    email: str
    phone: str | None


@dataclass(frozen=True)
class _Organisation:
    """Whom a booking is for: the member (if any), its memberships, the name the
    booking keeps and the key the organisation's places are counted by."""

    member_id: str | None
    memberships: list[MembershipView]
    name: str | None
    key: str | None


class _EventQueue:
    """One event's places as a batch is decided: its bookings read once under the
    event's lock, then kept up to date in memory booking by booking. The event's row
    is counted up once, at the end (``store.count_places``)."""

    def __init__(self, event: Event, queue: store.Queues) -> None:
        self.event = event
        self.opening = opening(event)
        self.day = domain.london(event.starts_at).date()  # member prices go by it
        self.booked_emails = set(queue.booked_emails)
        self.organisation_places = dict(queue.organisation_places)
        self.waiting = queue.waiting
        self.arrived = 0
        self.confirmed = 0

    @property
    def next_arrival(self) -> int:
        return self.event.arrivals + self.arrived + 1

    def place_for(self, form: _Form, organisation: _Organisation, now: datetime) -> domain.Place:
        """Confirmed or waitlisted; raises BookingRefused."""
        return domain.decide_place(
            self.opening,
            now=now,
            already_booked=form.email in self.booked_emails,
            organisation_places=self.organisation_places.get(organisation.key, 0)
            if organisation.key
            else 0,
        )

    def take(self, booking: NewBooking) -> int | None:
        """Count the booking in; returns its waiting-list position if it waits."""
        self.arrived += 1
        self.booked_emails.add(booking.email)
        if booking.organisation_key:
            key = booking.organisation_key
            self.organisation_places[key] = self.organisation_places.get(key, 0) + 1
        if booking.status == "confirmed":
            self.confirmed += 1
            self.opening = replace(self.opening, confirmed=self.opening.confirmed + 1)
            return None
        self.waiting += 1  # joins the tail
        return self.waiting


class BookingCommands(Places):
    """One method per command about bookings."""

    async def book_places(
        self, batch: Sequence[tuple[BookPlace, CommandContext]]
    ) -> list[BatchAnswer]:
        """Book places for a batch of bookers in the order they arrived: confirmed while
        places last, then the waiting list, first come first served; a refusal (closed,
        full, duplicate, over the limit, a bad field) answers that booker alone.

        Each booking is decided in memory, under the locks of the batch's events, before
        anything is written; then the bookings, their reminders and each event's
        counters go in a statement each (the CHECK on places still guards the count).
        The kernel writes every accepted booking's facts in the same transaction and
        answers once it has committed (``kernel.commands.CommandBatcher``).
        """
        forms: list[_Form | Refused] = []
        for command, ctx in batch:
            try:
                forms.append(self._read_form(command, ctx))
            except Refused as refusal:
                forms.append(refusal)
        valid = [form for form in forms if isinstance(form, _Form)]
        if not valid:
            return [form for form in forms if isinstance(form, Refused)]
        session = valid[0].context.session
        organisations = await _organisations(session, valid)
        events = await store.events_for_update(session, {f.command.event_id for f in valid})
        queues = {
            event_id: _EventQueue(
                event,
                await store.queues_for(
                    session,
                    event_id,
                    emails={f.email for f in valid if f.command.event_id == event_id},
                    organisation_keys={
                        key
                        for f in valid
                        if f.command.event_id == event_id and (key := organisations[f].key)
                    },
                ),
            )
            for event_id, event in sorted(events.items())
        }
        now = self.now()
        bookings: list[NewBooking] = []
        reminders: list[dict[str, Any]] = []
        answers: list[BatchAnswer] = []
        for form in forms:
            if isinstance(form, Refused):
                answers.append(form)
                continue
            organisation = organisations[form]
            queue = queues.get(form.command.event_id)
            try:
                booking = _booking(form, organisation, queue, now)
            except Refused as refusal:
                answers.append(refusal)
                continue
            assert queue is not None
            bookings.append(booking)
            position = queue.take(booking)
            event = queue.event
            if position is None:
                await self.publish_place_held(form.context.publish, booking, event, promoted=False)
                reminders += self.reminders_for(booking, event)
            else:
                await form.context.publish(
                    BookingWaitlisted(**booking_fields(booking, event), position=position),
                    id=derived_message_id("BookingWaitlisted", booking.id),
                )
            answers.append(booking_view(booking, event, position=position))
        await store.add_bookings(session, bookings)
        await store.add_reminders(session, reminders)
        for queue in queues.values():
            if queue.arrived:
                await store.count_places(
                    session, queue.event.id, arrivals=queue.arrived, confirmed=queue.confirmed
                )
        return answers

    def _read_form(self, command: BookPlace, ctx: CommandContext) -> _Form:
        """The booker's own fields checked: a mobile that can take texts, SMS only with one."""
        phone = None
        if command.phone:
            try:
                phone = domain.normalise_phone(command.phone, region=self.settings.phone_region)
            except domain.InvalidPhone as invalid:
                raise Refused(
                    "invalid", f"{invalid}; give a mobile number such as +44 7400 123456", "phone"
                ) from None
        if command.sms and phone is None:
            raise Refused("invalid", "SMS needs a phone number", "sms")
        return _Form(command, ctx, str(command.email).lower(), phone)

    async def cancel_booking(self, command: CancelBooking, ctx: CommandContext) -> dict[str, Any]:
        """The booker's own cancellation: allowed until the start; frees the place for the next in line."""
        now = self.now()
        booking, event = await lock_booking(ctx, command.reference)
        if booking.status == "cancelled":
            raise Refused(
                "conflict", f"booking {booking.reference} is already cancelled", "reference"
            )
        try:
            domain.cancellation_allowed(now=now, starts_at=event.starts_at)
        except domain.BookingRefused as refused:
            raise Refused(refused.code, str(refused), "reference") from None
        was = booking.status
        await cancel_one(
            ctx.publish,
            booking,
            event,
            now=now,
            reason="booker",
            entry=cancelled_booking_entry(event),
        )
        await store.void_pending_reminders(ctx.session, booking_id=booking.id)
        promoted: list[str] = []
        if was == "confirmed":
            event.confirmed -= 1
            promoted = await self.promote_from_waiting_list(ctx.session, ctx.publish, event)
        await ctx.session.flush()
        return {**booking_view(booking, event, position=None), "was": was, "promoted": promoted}

    async def show_booking(self, command: ShowBooking, ctx: CommandContext) -> dict[str, Any]:
        booking = await find_booking(ctx, command.reference)
        event = await store.event(ctx.session, booking.event_id)
        assert event is not None
        return booking_view(
            booking, event, position=await store.waiting_position(ctx.session, booking)
        )

    async def list_bookings(self, command: ListBookings, ctx: CommandContext) -> dict[str, Any]:
        event = await find_event(ctx, command.event_id)
        bookings = await store.bookings_of(ctx.session, event.id)
        position = 0
        views = []
        for booking in bookings:
            if booking.status == "waitlisted":
                position += 1
            views.append(
                booking_view(
                    booking, event, position=position if booking.status == "waitlisted" else None
                )
            )
        return {"event": event_view(event, waiting=position), "bookings": views}

    async def check_in(self, command: CheckIn, ctx: CommandContext) -> dict[str, Any]:
        """Record that a confirmed booker arrived, once."""
        now = self.now()
        booking, event = await lock_booking(ctx, command.reference)
        if booking.status != "confirmed":
            raise Refused(
                "conflict",
                f"booking {booking.reference} is {booking.status}, not confirmed",
                "reference",
            )
        if booking.attendance == "attended":
            return booking_view(booking, event, position=None)
        if booking.attendance == "no_show":
            raise Refused(
                "conflict",
                "the event has ended and this booking was recorded as a no-show",
                "reference",
            )
        if now < event.starts_at - timedelta(hours=self.settings.check_in_opens_h):
            raise Refused(
                "closed",
                f"check-in opens {self.settings.check_in_opens_h:g} hours before the start",
                "reference",
            )
        booking.attendance = "attended"
        booking.attendance_at = now
        await ctx.publish(
            attendance_recorded(booking, now),
            id=derived_message_id("AttendanceRecorded", booking.id),
        )
        await ctx.session.flush()
        return booking_view(booking, event, position=None)


async def _organisations(session: AsyncSession, forms: list[_Form]) -> dict[_Form, _Organisation]:
    """Whom each form books for, in two queries for the whole batch: the members the
    organisation names given belong to, then every member's memberships."""
    named = await store.members_named(
        session, {name for form in forms if (name := _named(form.command))}
    )
    member_ids = {
        form: form.command.member_id or named.get(_named(form.command) or "") for form in forms
    }
    memberships = await store.memberships_of_members(
        session, {member_id for member_id in member_ids.values() if member_id}
    )
    found = {}
    for form, member_id in member_ids.items():
        held = memberships.get(member_id, []) if member_id else []
        name = form.command.organisation_name or (held[0].member_name if held else None)
        key = member_id or (name or "").strip().lower() or None
        found[form] = _Organisation(member_id, held, name, key)
    return found


def _named(command: BookPlace) -> str | None:
    """The organisation's name, as members are looked up by, when the booker gave a
    name instead of a member id."""
    if command.member_id is None and command.organisation_name:
        return command.organisation_name.strip().lower()
    return None


def _booking(
    form: _Form, organisation: _Organisation, queue: _EventQueue | None, now: datetime
) -> NewBooking:
    """The booking the form gets from the queue as it stands; raises Refused (not a
    member, no such event, or the event's rules say no)."""
    command = form.command
    if organisation.member_id is not None and not organisation.memberships:
        raise Refused(
            "not_found",
            f"no member organisation has the id {organisation.member_id!r}",
            "member_id",
        )
    if queue is None:
        raise Refused("not_found", f"no event has the id {command.event_id!r}", "event_id")
    try:
        place = queue.place_for(form, organisation, now)
    except domain.BookingRefused as refused:
        raise Refused(refused.code, str(refused), refused.field) from None
    event = queue.event
    price, member_price = domain.price_for(
        is_member=any(
            domain.membership_active(m.starts_on, m.ends_on, queue.day)
            for m in organisation.memberships
        ),
        member_price=event.member_price_minor,
        non_member_price=event.non_member_price_minor,
    )
    return NewBooking(
        id=str(uuid.uuid4()),
        reference=domain.new_reference(),
        event_id=event.id,
        arrival=queue.next_arrival,  # under the event's lock: first come, first served
        status=place,
        name=command.name,
        email=form.email,
        phone=form.phone,
        sms=command.sms,
        member_id=organisation.member_id,
        organisation_name=organisation.name,
        organisation_key=organisation.key,
        channel=command.channel,
        price_minor=price,
        member_price=member_price,
        created_at=now,
        confirmed_at=now if place == "confirmed" else None,
    )
