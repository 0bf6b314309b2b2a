"""The bookers' commands: book, cancel, show, list, check in."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from contracts.envelope import derived_message_id
from contracts.events_v1 import (
    BookingWaitlisted,
    BookPlace,
    CancelBooking,
    CheckIn,
    ListBookings,
    ShowBooking,
)
from kernel.commands import CommandContext, Refused
from services.events import domain, store
from services.events.facts import booking_fields, booking_view, calendar_entry, event_view
from services.events.handlers.places import (
    Places,
    attendance_recorded,
    cancel_one,
    find_booking,
    find_event,
    lock_booking,
    lock_event,
    opening,
)
from services.events.store import Booking


class BookingCommands(Places):
    """One method per command about bookings."""

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
        event = await lock_event(ctx, command.event_id)
        queue = await store.queue_for(
            ctx.session, event.id, email=email, organisation_key=organisation_key
        )
        event_day = domain.london(event.starts_at).date()
        is_member = any(
            domain.membership_active(m.starts_on, m.ends_on, event_day) for m in memberships
        )
        try:
            place = domain.decide_place(
                opening(event),
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
            # One above every REQUEST this booking's invitation was sent with (each carried
            # the event's SEQUENCE of its day, never above today's). The event itself has
            # not changed, so its own SEQUENCE stays; a rebooking is another booking, with
            # an invitation UID of its own (services.notifications.calendar).
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
