"""What the command handlers share: the clock, finding and locking rows, and the
mechanics of a place — confirming it (facts, fee, reminders), promoting from the
waiting list, cancelling."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import derived_message_id, new_id
from contracts.events_v1 import (
    AttendanceRecorded,
    BookingCancelled,
    BookingChargeable,
    BookingConfirmed,
    BookingPromoted,
    CalendarEntry,
)
from kernel.commands import CommandContext, Refused
from kernel.outbox import Publisher
from services.events import domain, store
from services.events.domain.booking import Opening
from services.events.facts import booker, booking_fields, calendar_entry, pence
from services.events.settings import EventsSettings
from services.events.store import Booking, Event, NewBooking, Reminder


class Places:
    """The base of the command handlers: the service's settings and clock, and what
    every handler that gives or takes a place does."""

    def __init__(self, settings: EventsSettings, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.clock = clock

    def now(self) -> datetime:
        return self.clock()

    async def confirm(
        self,
        session: AsyncSession,
        publish: Publisher,
        booking: Booking,
        event: Event,
        *,
        promoted: bool,
    ) -> None:
        """Hold the place: facts for the booker (and for billing when a fee is due), and reminders."""
        await self.publish_place_held(publish, booking, event, promoted=promoted)
        self.schedule_reminders(session, booking, event)

    async def publish_place_held(
        self, publish: Publisher, booking: Booking | NewBooking, event: Event, *, promoted: bool
    ) -> None:
        """The facts of a place held: confirmed or promoted, and chargeable when a fee is due."""
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

    def schedule_reminders(self, session: AsyncSession, booking: Booking, event: Event) -> None:
        session.add_all([Reminder(**row) for row in self.reminders_for(booking, event)])

    def reminders_for(self, booking: Booking | NewBooking, event: Event) -> list[dict[str, Any]]:
        """The rows of a confirmed booking's reminders, one per slot still ahead; none
        for a booking whose booker was erased (a move or a promotion must not bring
        their reminders back)."""
        if domain.is_redacted(booking.email):
            return []
        return [
            {
                "id": new_id(),
                "booking_id": booking.id,
                "event_id": event.id,
                "hours_before": slot.hours_before,
                "event_sequence": event.sequence,
                "due_at": slot.due_at,
                "status": "pending",
            }
            for slot in domain.reminder_slots(
                event.starts_at, now=self.now(), offsets_h=tuple(self.settings.reminder_offsets_h)
            )
        ]

    async def reschedule_reminders(self, ctx: CommandContext, event: Event) -> None:
        """The event moved: pending reminders go, and each confirmed booking gets new ones."""
        await store.void_pending_reminders(ctx.session, event_id=event.id)
        for booking in await store.bookings_of(ctx.session, event.id, ("confirmed",)):
            self.schedule_reminders(ctx.session, booking, event)

    async def promote_from_waiting_list(
        self, session: AsyncSession, publish: Publisher, event: Event
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


def utc(moment: datetime | None) -> datetime | None:
    """Instants are stored, compared and published in UTC, whatever offset they came with."""
    return moment.astimezone(UTC) if moment is not None else None


def opening(event: Event) -> Opening:
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


async def find_event(ctx: CommandContext, event_id: str) -> Event:
    event = await store.event(ctx.session, event_id)
    if event is None:
        raise Refused("not_found", f"no event has the id {event_id!r}", "event_id")
    return event


async def lock_event(ctx: CommandContext, event_id: str) -> Event:
    event = await store.event_for_update(ctx.session, event_id)
    if event is None:
        raise Refused("not_found", f"no event has the id {event_id!r}", "event_id")
    return event


async def find_booking(ctx: CommandContext, reference: str) -> Booking:
    booking = await store.booking_by_reference(ctx.session, reference)
    if booking is None:
        raise Refused("not_found", f"no booking has the reference {reference!r}", "reference")
    return booking


async def lock_booking(ctx: CommandContext, reference: str) -> tuple[Booking, Event]:
    """The booking and its event, the event locked first and the booking read again under it."""
    booking = await find_booking(ctx, reference)
    event = await store.event_for_update(ctx.session, booking.event_id)
    assert event is not None
    await ctx.session.refresh(booking)
    return booking, event


async def cancel_one(
    publish: Publisher,
    booking: Booking,
    event: Event,
    *,
    now: datetime,
    reason: str,
    entry: CalendarEntry,
    event_reason: str | None = None,
) -> None:
    """Cancel one live booking and say so, once (the id is derived from the booking);
    ``event_reason`` is the organiser's own words when the whole event is cancelled."""
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
            event_reason=event_reason,
            # An erased booker is nobody to tell; the fact still goes, as billing may owe a refund.
            booker=None if domain.is_redacted(booking.email) else booker(booking),
            # Only a confirmed place was ever in the booker's calendar.
            calendar=entry if was == "confirmed" else None,
        ),
        id=derived_message_id("BookingCancelled", booking.id),
    )


def attendance_recorded(booking: Booking, now: datetime) -> AttendanceRecorded:
    """The fact of a booking's recorded attendance (attended or no-show)."""
    return AttendanceRecorded(
        booking_id=booking.id,
        reference=booking.reference,
        event_id=booking.event_id,
        outcome=booking.attendance,  # type: ignore[arg-type]
        recorded_at=now,
        member_id=booking.member_id,
        organisation_name=booking.organisation_name,
    )
