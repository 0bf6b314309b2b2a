"""The events officer's commands: create, publish, update, cancel, list, show,
the feed and the report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from contracts.calendar import invitation_uid
from contracts.envelope import derived_message_id
from contracts.events_v1 import (
    CancelEvent,
    CreateEvent,
    EventCalendar,
    EventCancelled,
    EventChanged,
    EventFeed,
    EventPublished,
    EventReport,
    ListEvents,
    PublishEvent,
    Schedule,
    ShowEvent,
    UpdateEvent,
)
from kernel.commands import CommandContext, Refused
from services.events import calendar, domain, store
from services.events.facts import (
    attendee,
    calendar_entry,
    cancelled_booking_entry,
    event_view,
    pence,
)
from services.events.handlers.places import (
    Places,
    cancel_one,
    find_event,
    lock_event,
    opening,
    utc,
)
from services.events.handlers.reports import organisations_attending
from services.events.store import Event

# Fields of an event that its calendar entry shows: a change to one raises SEQUENCE.
CALENDAR_FIELDS = ("title", "description", "venue", "online_url", "starts_at", "ends_at")
MOVING_FIELDS = ("venue", "online_url", "starts_at", "ends_at")


class EventCommands(Places):
    """One method per command about events."""

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
            starts_at=utc(command.starts_at),
            ends_at=utc(command.ends_at),
            capacity=command.capacity,
            confirmed=0,
            arrivals=0,
            member_price_minor=command.member_price.amount_minor,
            non_member_price_minor=command.non_member_price.amount_minor,
            booking_opens_at=utc(command.booking_opens_at),
            booking_closes_at=utc(closes),
            places_per_organisation=command.places_per_organisation,
            waiting_list=command.waiting_list,
            status="draft",
            sequence=0,
            created_at=now,
            updated_at=now,
        )
        ctx.session.add(event)
        await ctx.session.flush()
        await ctx.record_action(
            "create_event",
            target=event.title,
            filters={"event_id": event.id, "starts_at": event.starts_at.isoformat()},
        )
        return event_view(event, waiting=0)

    async def publish_event(self, command: PublishEvent, ctx: CommandContext) -> dict[str, Any]:
        """Open a draft for booking and say so."""
        event = await lock_event(ctx, command.event_id)
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
        await ctx.record_action("publish_event", target=event.title, filters={"event_id": event.id})
        return event_view(event, waiting=0)

    async def update_event(self, command: UpdateEvent, ctx: CommandContext) -> dict[str, Any]:
        """Change an event; a move reschedules reminders and tells every confirmed attendee."""
        now = self.now()
        event = await lock_event(ctx, command.event_id)
        if event.status in ("cancelled", "completed"):
            raise Refused("closed", f"the event is {event.status}; it cannot change", "event_id")
        new = changes(command, event)
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
        was = Schedule(
            starts_at=event.starts_at,
            ends_at=event.ends_at,
            location=event.venue,
            url=event.online_url,
        )
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
            # An erased booker is nobody to tell.
            told = [b for b in confirmed if not domain.is_redacted(b.email)] if moved else []
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
                    attendees=[attendee(b) for b in told],
                    was=was,
                ),
                id=derived_message_id("EventChanged", ctx.envelope.id),
            )
            promoted = await self.promote_from_waiting_list(ctx.session, ctx.publish, event)
        await ctx.session.flush()
        await ctx.record_action(
            "update_event",
            target=event.title,
            filters={"event_id": event.id, "changed": changed},
            result={"moved": moved, "promoted": len(promoted)},
        )
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
        event = await lock_event(ctx, command.event_id)
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
            await cancel_one(
                ctx.publish,
                booking,
                event,
                now=now,
                reason="event_cancelled",
                entry=entry,
                event_reason=command.reason,
            )
        event.confirmed = 0
        await store.void_pending_reminders(ctx.session, event_id=event.id)
        await ctx.session.flush()
        await ctx.record_action(
            "cancel_event",
            target=event.title,
            filters={"event_id": event.id},  # the reason is on EventCancelled, for the attendees
            result={"bookings_cancelled": len(live)},
        )
        return {**event_view(event, waiting=0), "bookings_cancelled": len(live)}

    async def list_events(self, command: ListEvents, ctx: CommandContext) -> dict[str, Any]:
        found = await store.events(ctx.session, status=command.status, programme=command.programme)
        now = self.now()
        waiting = await store.waiting_counts(ctx.session, [e.id for e in found])
        return {
            "events": [
                {**event_view(e, waiting=waiting.get(e.id, 0)), **self.bookable(e, now)}
                for e in found
            ]
        }

    async def show_event(self, command: ShowEvent, ctx: CommandContext) -> dict[str, Any]:
        event = await find_event(ctx, command.event_id)
        return {
            **event_view(event, waiting=await store.waiting_count(ctx.session, event.id)),
            **self.bookable(event, self.now()),
        }

    @staticmethod
    def bookable(event: Event, now: datetime) -> dict[str, Any]:
        """Whether a person could book now, and if not, why: the booking rules' own answer."""
        state, reason = domain.booking_state(opening(event), now=now)
        return {"booking": state, "booking_refused": reason}

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
                url=self.settings.feed_url or "",
                author=self.settings.feed_title,
                now=now,
            )
            media_type = "application/atom+xml"
        return {
            "format": command.format,
            "media_type": media_type,
            "events": len(upcoming),
            "content": content.decode(),
        }

    async def event_calendar(self, command: EventCalendar, ctx: CommandContext) -> dict[str, Any]:
        """One event's calendar file: the event's own UID and SEQUENCE, as in the feed; or,
        given a booking's reference, that booking's entry as its invitations carry it (their
        UID, and a cancelled booking's SEQUENCE one above the event's, as its CANCEL was
        sent), so that adding it beside an invitation replaces, never doubles, the entry.
        """
        event = await find_event(ctx, command.event_id)
        if event.status == "draft":
            raise Refused("not_found", f"no event {command.event_id}", "event_id")
        entry, name = calendar_entry(event), event.id
        if command.reference is not None:
            booking = await store.booking_by_reference(ctx.session, command.reference)
            if booking is None or booking.event_id != event.id or booking.status == "waitlisted":
                raise Refused(
                    "not_found",
                    f"no place booked as {command.reference} at this event",
                    "reference",
                )
            if booking.status == "cancelled":
                entry = cancelled_booking_entry(event)
            entry = entry.model_copy(update={"uid": invitation_uid(entry.uid, booking.reference)})
            name = booking.reference
        content = calendar.ics([entry], now=self.now())
        return {
            "media_type": "text/calendar",
            "filename": f"{name}.ics",
            "content": content.decode(),
        }

    async def report(self, command: EventReport, ctx: CommandContext) -> dict[str, Any]:
        """Booked, attended, no-shows, organisations attending (and which) and bookings by
        channel."""
        event = await find_event(ctx, command.event_id)
        bookings = await store.bookings_of(ctx.session, event.id)
        return {
            "event": event_view(event, waiting=await store.waiting_count(ctx.session, event.id)),
            **domain.attendance_report(bookings),
            "organisations": organisations_attending(bookings),
        }


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


def changes(command: UpdateEvent, event: Event) -> dict[str, Any]:
    """Column → new value, for each field the update gives (or clears) that differs from now."""
    asked: dict[str, Any] = {}
    for name in UpdateEvent.model_fields.keys() - {"event_id", "clear"}:
        value = getattr(command, name)
        if value is None:
            continue  # null on the wire means "leave as it is"
        if name in ("member_price", "non_member_price"):
            asked[f"{name}_minor"] = value.amount_minor
        else:
            asked[name] = utc(value) if isinstance(value, datetime) else value
    asked.update(dict.fromkeys(command.clear))
    return {column: value for column, value in asked.items() if getattr(event, column) != value}
