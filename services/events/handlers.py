"""Events' handlers: one function per command or fact.

Every command handler runs inside the transaction ``kernel.commands.answer``
opened; what it publishes goes to the outbox of that transaction. A handler
that changes an event's places locks the event's row first, so concurrent
bookings, cancellations and replicas take their turns.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.envelope import derived_message_id
from contracts.events_v1 import (
    AttendanceRecorded,
    BookingCancelled,
    BookingChargeable,
    BookingConfirmed,
    BookingPromoted,
    BookingWaitlisted,
    BookPlace,
    CancelBooking,
    CancelEvent,
    CheckIn,
    CreateEvent,
    EventCancelled,
    EventChanged,
    EventFeed,
    EventPublished,
    EventReport,
    ListBookings,
    ListEvents,
    PublishEvent,
    ShowBooking,
    ShowEvent,
    UpdateEvent,
)
from contracts.subscriptions_v1 import MembershipChanged, MembershipEnded, MembershipStarted
from kernel.commands import CommandContext, Refused
from kernel.consumer import HandlerContext
from kernel.outbox import Publisher
from services.events import calendar, domain, store
from services.events.domain.booking import Opening
from services.events.facts import (
    attendee,
    booking_fields,
    booking_view,
    calendar_entry,
    event_view,
    pence,
)
from services.events.settings import EventsSettings
from services.events.store import Booking, Event, Reminder

# Fields of an event that its calendar entry shows: a change to one raises SEQUENCE.
CALENDAR_FIELDS = ("title", "description", "venue", "online_url", "starts_at", "ends_at")
MOVING_FIELDS = ("venue", "online_url", "starts_at", "ends_at")


class EventsHandlers:
    """The command handlers, sharing the service's settings and clock."""

    def __init__(self, settings: EventsSettings, clock: Any) -> None:
        self.settings = settings
        self.clock = clock

    def now(self) -> datetime:
        return self.clock()

    # Events

    async def create_event(self, command: CreateEvent, ctx: CommandContext) -> dict[str, Any]:
        """Add a draft event."""
        now = self.now()
        closes = command.booking_closes_at or command.starts_at
        try:
            domain.check_event(
                starts_at=command.starts_at,
                ends_at=command.ends_at,
                booking_opens_at=command.booking_opens_at,
                booking_closes_at=closes,
                member_price=command.member_price.amount_minor,
                non_member_price=command.non_member_price.amount_minor,
                venue=command.venue,
                online_url=command.online_url,
            )
        except domain.EventInvalid as invalid:
            raise Refused("invalid", str(invalid), invalid.field) from None
        if command.starts_at <= now:
            raise Refused("invalid", "the event would start in the past", "starts_at")
        event = Event(
            id=domain.new_reference("E", 6),
            kind=command.kind,
            programme=command.programme,
            title=command.title,
            description=command.description,
            venue=command.venue,
            online_url=command.online_url,
            starts_at=_utc(command.starts_at),
            ends_at=_utc(command.ends_at),
            capacity=command.capacity,
            confirmed=0,
            arrivals=0,
            member_price_minor=command.member_price.amount_minor,
            non_member_price_minor=command.non_member_price.amount_minor,
            booking_opens_at=_utc(command.booking_opens_at),
            booking_closes_at=_utc(closes),
            places_per_organisation=command.places_per_organisation,
            waiting_list=command.waiting_list,
            status="draft",
            sequence=0,
            created_at=now,
            updated_at=now,
        )
        ctx.session.add(event)
        await ctx.session.flush()
        return event_view(event, waiting=0)

    async def publish_event(self, command: PublishEvent, ctx: CommandContext) -> dict[str, Any]:
        """Open a draft for booking and say so."""
        event = await _locked_event(ctx, command.event_id)
        if event.status != "draft":
            raise Refused("conflict", f"the event is {event.status}, not a draft", "event_id")
        if event.starts_at <= self.now():
            raise Refused("invalid", "the event has already started", "event_id")
        event.status = "published"
        event.updated_at = self.now()
        await ctx.publish(
            EventPublished(
                event_id=event.id,
                title=event.title,
                kind=event.kind,  # type: ignore[arg-type]
                programme=event.programme,  # type: ignore[arg-type]
                calendar=calendar_entry(event),
                capacity=event.capacity,
                member_price=pence(event.member_price_minor),
                non_member_price=pence(event.non_member_price_minor),
                booking_opens_at=event.booking_opens_at,
                booking_closes_at=event.booking_closes_at,
            ),
            id=derived_message_id("EventPublished", event.id),
        )
        return event_view(event, waiting=0)

    async def update_event(self, command: UpdateEvent, ctx: CommandContext) -> dict[str, Any]:
        """Change an event; a move reschedules reminders and tells every confirmed attendee."""
        now = self.now()
        event = await _locked_event(ctx, command.event_id)
        if event.status in ("cancelled", "completed"):
            raise Refused("closed", f"the event is {event.status}; it cannot change", "event_id")
        new = _changes(command, event)
        merged = {column: new.get(column, getattr(event, column)) for column in EVENT_COLUMNS}
        if (
            "starts_at" in new
            and "booking_closes_at" not in new
            and event.booking_closes_at == event.starts_at
        ):
            # Bookings that closed at the start move with it.
            new["booking_closes_at"] = merged["booking_closes_at"] = new["starts_at"]
        try:
            domain.check_event(
                starts_at=merged["starts_at"],
                ends_at=merged["ends_at"],
                booking_opens_at=merged["booking_opens_at"],
                booking_closes_at=merged["booking_closes_at"],
                member_price=merged["member_price_minor"],
                non_member_price=merged["non_member_price_minor"],
                venue=merged["venue"],
                online_url=merged["online_url"],
            )
            domain.check_capacity_change(merged["capacity"], event.confirmed)
        except domain.EventInvalid as invalid:
            raise Refused("invalid", str(invalid), invalid.field) from None
        if "starts_at" in new and new["starts_at"] <= now:
            raise Refused("invalid", "the event cannot be moved into the past", "starts_at")
        if not new:
            return {
                **event_view(event, waiting=await store.waiting_count(ctx.session, event.id)),
                "changed": [],
                "promoted": [],
            }
        for column, value in new.items():
            setattr(event, column, value)
        event.updated_at = now
        changed = sorted(new)
        moved = any(column in new for column in MOVING_FIELDS)
        promoted: list[str] = []
        if event.status == "published":
            if any(column in new for column in CALENDAR_FIELDS):
                event.sequence += 1
            if "starts_at" in new:
                await self.reschedule_reminders(ctx, event)
            confirmed = await store.bookings_of(ctx.session, event.id, ("confirmed",))
            await ctx.publish(
                EventChanged(
                    event_id=event.id,
                    title=event.title,
                    kind=event.kind,  # type: ignore[arg-type]
                    programme=event.programme,  # type: ignore[arg-type]
                    calendar=calendar_entry(event),
                    changed=changed,
                    moved=moved,
                    capacity=event.capacity,
                    attendees=[attendee(b) for b in confirmed] if moved else [],
                ),
                id=derived_message_id("EventChanged", ctx.envelope.id),
            )
            promoted = await self.promote_from_waiting_list(ctx.session, ctx.publish, event)
        await ctx.session.flush()
        waiting = await store.waiting_count(ctx.session, event.id)
        return {
            **event_view(event, waiting=waiting),
            "changed": changed,
            "moved": moved,
            "promoted": promoted,
        }

    async def cancel_event(self, command: CancelEvent, ctx: CommandContext) -> dict[str, Any]:
        """Cancel the event and every live booking on it, one fact each; void every reminder."""
        now = self.now()
        event = await _locked_event(ctx, command.event_id)
        if event.status in ("cancelled", "completed"):
            raise Refused("closed", f"the event is already {event.status}", "event_id")
        was_published = event.status == "published"
        event.status = "cancelled"
        event.sequence += 1
        event.updated_at = now
        live = await store.bookings_of(ctx.session, event.id, ("confirmed", "waitlisted"))
        entry = calendar_entry(event, cancelled=True)
        if was_published:
            await ctx.publish(
                EventCancelled(
                    event_id=event.id,
                    title=event.title,
                    kind=event.kind,  # type: ignore[arg-type]
                    programme=event.programme,  # type: ignore[arg-type]
                    calendar=entry,
                    cancelled_at=now,
                    reason=command.reason,
                    bookings_cancelled=len(live),
                ),
                id=derived_message_id("EventCancelled", event.id),
            )
        for booking in live:
            await _cancel(
                ctx.publish, booking, event, now=now, reason="event_cancelled", entry=entry
            )
        event.confirmed = 0
        await store.void_pending_reminders(ctx.session, event_id=event.id)
        await ctx.session.flush()
        return {**event_view(event, waiting=0), "bookings_cancelled": len(live)}

    async def list_events(self, command: ListEvents, ctx: CommandContext) -> dict[str, Any]:
        found = await store.events(ctx.session, status=command.status, programme=command.programme)
        return {
            "events": [
                event_view(e, waiting=await store.waiting_count(ctx.session, e.id)) for e in found
            ]
        }

    async def show_event(self, command: ShowEvent, ctx: CommandContext) -> dict[str, Any]:
        event = await _event(ctx, command.event_id)
        return event_view(event, waiting=await store.waiting_count(ctx.session, event.id))

    async def feed(self, command: EventFeed, ctx: CommandContext) -> dict[str, Any]:
        """The upcoming published events as an iCalendar or Atom document."""
        now = self.now()
        upcoming = await store.upcoming_published(ctx.session, now)
        if command.format == "ics":
            content = calendar.ics((calendar_entry(e) for e in upcoming), now=now)
            media_type = "text/calendar"
        else:
            content = calendar.atom(
                ((e.id, calendar_entry(e), e.updated_at) for e in upcoming),
                title=self.settings.feed_title,
                url=self.settings.feed_url,
                now=now,
            )
            media_type = "application/atom+xml"
        return {
            "format": command.format,
            "media_type": media_type,
            "events": len(upcoming),
            "content": content.decode(),
        }

    async def report(self, command: EventReport, ctx: CommandContext) -> dict[str, Any]:
        """Booked, attended, no-shows, organisations attending and bookings by channel."""
        event = await _event(ctx, command.event_id)
        bookings = await store.bookings_of(ctx.session, event.id)
        return {
            "event": event_view(event, waiting=await store.waiting_count(ctx.session, event.id)),
            **domain.attendance_report(bookings),
        }

    # Bookings

    async def book_place(self, command: BookPlace, ctx: CommandContext) -> dict[str, Any]:
        """Book a place: confirmed while places last, then the waiting list, first come first served."""
        now = self.now()
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
        member_id = command.member_id
        if member_id is None and command.organisation_name:
            member_id = await store.member_named(ctx.session, command.organisation_name)
        memberships = await store.memberships_of(ctx.session, member_id) if member_id else []
        if member_id is not None and not memberships:
            raise Refused(
                "not_found", f"no member organisation has the id {member_id!r}", "member_id"
            )
        organisation_name = command.organisation_name or (
            memberships[0].member_name if memberships else None
        )
        organisation_key = member_id or (organisation_name or "").strip().lower() or None
        email = str(command.email).lower()
        event = await _locked_event(ctx, command.event_id)
        queue = await store.queue_for(
            ctx.session, event.id, email=email, organisation_key=organisation_key
        )
        event_day = domain.london(event.starts_at).date()
        is_member = any(
            domain.membership_active(m.starts_on, m.ends_on, event_day) for m in memberships
        )
        try:
            place = domain.decide_place(
                _opening(event),
                now=now,
                already_booked=queue.already_booked,
                organisation_places=queue.organisation_places,
            )
        except domain.BookingRefused as refused:
            raise Refused(refused.code, str(refused), refused.field) from None
        price, member_price = domain.price_for(
            is_member=is_member,
            member_price=event.member_price_minor,
            non_member_price=event.non_member_price_minor,
        )
        event.arrivals += 1  # under the event's lock: first come, first served
        booking = Booking(
            id=str(uuid.uuid4()),
            reference=domain.new_reference(),
            event_id=event.id,
            arrival=event.arrivals,
            status=place,
            name=command.name,
            email=email,
            phone=phone,
            sms=command.sms,
            member_id=member_id,
            organisation_name=organisation_name,
            organisation_key=organisation_key,
            channel=command.channel,
            price_minor=price,
            member_price=member_price,
            created_at=now,
            confirmed_at=now if place == "confirmed" else None,
        )
        ctx.session.add(booking)
        position = None
        if place == "confirmed":
            event.confirmed += 1
            await self.confirm(ctx.session, ctx.publish, booking, event, promoted=False)
        else:
            position = queue.waiting + 1  # joins the tail
            await ctx.publish(
                BookingWaitlisted(**booking_fields(booking, event), position=position),
                id=derived_message_id("BookingWaitlisted", booking.id),
            )
        return booking_view(booking, event, position=position)

    async def cancel_booking(self, command: CancelBooking, ctx: CommandContext) -> dict[str, Any]:
        """The booker's own cancellation: allowed until the start; frees the place for the next in line."""
        now = self.now()
        booking, event = await _locked_booking(ctx, command.reference)
        if booking.status == "cancelled":
            raise Refused(
                "conflict", f"booking {booking.reference} is already cancelled", "reference"
            )
        try:
            domain.cancellation_allowed(now=now, starts_at=event.starts_at)
        except domain.BookingRefused as refused:
            raise Refused(refused.code, str(refused), "reference") from None
        was = booking.status
        await _cancel(
            ctx.publish,
            booking,
            event,
            now=now,
            reason="booker",
            entry=calendar_entry(event, sequence=event.sequence + 1, cancelled=True),
        )
        await store.void_pending_reminders(ctx.session, booking_id=booking.id)
        promoted: list[str] = []
        if was == "confirmed":
            event.confirmed -= 1
            promoted = await self.promote_from_waiting_list(ctx.session, ctx.publish, event)
        await ctx.session.flush()
        return {**booking_view(booking, event, position=None), "was": was, "promoted": promoted}

    async def show_booking(self, command: ShowBooking, ctx: CommandContext) -> dict[str, Any]:
        booking = await _booking(ctx, command.reference)
        event = await store.event(ctx.session, booking.event_id)
        assert event is not None
        return booking_view(
            booking, event, position=await store.waiting_position(ctx.session, booking)
        )

    async def list_bookings(self, command: ListBookings, ctx: CommandContext) -> dict[str, Any]:
        event = await _event(ctx, command.event_id)
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
        booking, event = await _locked_booking(ctx, command.reference)
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

    # What the commands share

    async def confirm(
        self, session: Any, publish: Publisher, booking: Booking, event: Event, *, promoted: bool
    ) -> None:
        """Hold the place: facts for the booker (and for billing when a fee is due), and reminders."""
        fields = booking_fields(booking, event)
        price = pence(booking.price_minor)
        entry = calendar_entry(event)
        if promoted:
            await publish(
                BookingPromoted(
                    **fields, price=price, member_price=booking.member_price, calendar=entry
                ),
                id=derived_message_id("BookingPromoted", booking.id),
            )
        else:
            await publish(
                BookingConfirmed(
                    **fields, price=price, member_price=booking.member_price, calendar=entry
                ),
                id=derived_message_id("BookingConfirmed", booking.id),
            )
        if booking.price_minor > 0:
            await publish(
                BookingChargeable(
                    booking_id=booking.id,
                    reference=booking.reference,
                    event_id=event.id,
                    event_title=event.title,
                    event_starts_at=event.starts_at,
                    member_id=booking.member_id,
                    organisation_name=booking.organisation_name,
                    booker_name=booking.name,
                    booker_email=booking.email,
                    fee=price,
                    member_price=booking.member_price,
                    refund_until=event.starts_at,
                ),
                id=derived_message_id("BookingChargeable", booking.id),
            )
        self.schedule_reminders(session, booking, event)

    def schedule_reminders(self, session: Any, booking: Booking, event: Event) -> None:
        for slot in domain.reminder_slots(
            event.starts_at, now=self.now(), offsets_h=tuple(self.settings.reminder_offsets_h)
        ):
            session.add(
                Reminder(
                    id=str(uuid.uuid4()),
                    booking_id=booking.id,
                    event_id=event.id,
                    hours_before=slot.hours_before,
                    event_sequence=event.sequence,
                    due_at=slot.due_at,
                    status="pending",
                )
            )

    async def reschedule_reminders(self, ctx: CommandContext, event: Event) -> None:
        """The event moved: pending reminders go, and each confirmed booking gets new ones."""
        await store.void_pending_reminders(ctx.session, event_id=event.id)
        for booking in await store.bookings_of(ctx.session, event.id, ("confirmed",)):
            self.schedule_reminders(ctx.session, booking, event)

    async def promote_from_waiting_list(
        self, session: Any, publish: Publisher, event: Event
    ) -> list[str]:
        """Give freed places to the head of the waiting list, at once; returns their references."""
        room = domain.places_to_promote(
            capacity=event.capacity,
            confirmed=event.confirmed,
            waiting=await store.waiting_count(session, event.id),
        )
        if not room or event.status != "published":
            return []
        promoted = []
        for booking in await store.waiting(session, event.id, limit=room):
            booking.status = "confirmed"
            booking.confirmed_at = self.now()
            event.confirmed += 1
            await self.confirm(session, publish, booking, event, promoted=True)
            promoted.append(booking.reference)
        return promoted


# Facts from subscriptions: the membership read model


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


async def on_membership_changed(fact: MembershipChanged, ctx: HandlerContext) -> None:
    """Keep the tier (and the name) up to date; the membership goes on."""
    known = await store.membership(ctx.session, fact.membership_id)
    await store.record_membership(
        ctx.session,
        membership_id=fact.membership_id,
        member_id=fact.member_id,
        member_name=fact.member_name,
        tier=fact.new_tier,
        starts_on=known.starts_on if known else fact.effective_on,
        ends_on=known.ends_on if known else None,
    )


async def on_membership_ended(fact: MembershipEnded, ctx: HandlerContext) -> None:
    """From the day after ``ends_on`` the organisation's bookings pay the non-member price."""
    known = await store.membership(ctx.session, fact.membership_id)
    await store.record_membership(
        ctx.session,
        membership_id=fact.membership_id,
        member_id=fact.member_id,
        member_name=fact.member_name,
        tier=known.tier if known else "unknown",
        starts_on=known.starts_on if known else fact.ends_on,
        ends_on=fact.ends_on,
    )


# Helpers


EVENT_COLUMNS = (
    "title",
    "description",
    "venue",
    "online_url",
    "starts_at",
    "ends_at",
    "capacity",
    "member_price_minor",
    "non_member_price_minor",
    "booking_opens_at",
    "booking_closes_at",
    "places_per_organisation",
)


def _changes(command: UpdateEvent, event: Event) -> dict[str, Any]:
    """Column → new value, for each field the update gives (or clears) that differs from now."""
    asked: dict[str, Any] = {}
    for name in UpdateEvent.model_fields.keys() - {"event_id", "clear"}:
        value = getattr(command, name)
        if value is None:
            continue  # null on the wire means "leave as it is"
        if name in ("member_price", "non_member_price"):
            asked[f"{name}_minor"] = value.amount_minor
        else:
            asked[name] = _utc(value) if isinstance(value, datetime) else value
    asked.update(dict.fromkeys(command.clear))
    return {column: value for column, value in asked.items() if getattr(event, column) != value}


def _utc(moment: datetime | None) -> datetime | None:
    """Instants are stored, compared and published in UTC, whatever offset they came with."""
    return moment.astimezone(UTC) if moment is not None else None


def _opening(event: Event) -> Opening:
    return Opening(
        status=event.status,
        starts_at=event.starts_at,
        booking_opens_at=event.booking_opens_at,
        booking_closes_at=event.booking_closes_at,
        capacity=event.capacity,
        confirmed=event.confirmed,
        waiting_list=event.waiting_list,
        places_per_organisation=event.places_per_organisation,
    )


async def _event(ctx: CommandContext, event_id: str) -> Event:
    event = await store.event(ctx.session, event_id)
    if event is None:
        raise Refused("not_found", f"no event has the id {event_id!r}", "event_id")
    return event


async def _locked_event(ctx: CommandContext, event_id: str) -> Event:
    event = await store.event_for_update(ctx.session, event_id)
    if event is None:
        raise Refused("not_found", f"no event has the id {event_id!r}", "event_id")
    return event


async def _booking(ctx: CommandContext, reference: str) -> Booking:
    booking = await store.booking_by_reference(ctx.session, reference)
    if booking is None:
        raise Refused("not_found", f"no booking has the reference {reference!r}", "reference")
    return booking


async def _locked_booking(ctx: CommandContext, reference: str) -> tuple[Booking, Event]:
    """The booking and its event, the event locked first and the booking read again under it."""
    booking = await _booking(ctx, reference)
    event = await store.event_for_update(ctx.session, booking.event_id)
    assert event is not None
    await ctx.session.refresh(booking)
    return booking, event


async def _cancel(
    publish: Publisher, booking: Booking, event: Event, *, now: datetime, reason: str, entry: Any
) -> None:
    was = booking.status
    booking.status = "cancelled"
    booking.cancelled_at = now
    booking.cancelled_reason = reason
    await publish(
        BookingCancelled(
            booking_id=booking.id,
            reference=booking.reference,
            event_id=event.id,
            cancelled_at=now,
            reason=reason,  # type: ignore[arg-type]
            was=was,  # type: ignore[arg-type]
            event_title=event.title,
            booker=booking_fields(booking, event)["booker"],
            # Only a confirmed place was ever in the booker's calendar.
            calendar=entry if was == "confirmed" else None,
        ),
        id=derived_message_id("BookingCancelled", booking.id),
    )


def attendance_recorded(booking: Booking, now: datetime) -> AttendanceRecorded:
    return AttendanceRecorded(
        booking_id=booking.id,
        reference=booking.reference,
        event_id=booking.event_id,
        outcome=booking.attendance,  # type: ignore[arg-type]
        recorded_at=now,
        member_id=booking.member_id,
        organisation_name=booking.organisation_name,
    )
