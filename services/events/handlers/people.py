"""A person's rights over what the events service holds on them: erasure
(``PersonErasureRequested``) and subject access (``ExportPersonFromEvents``)."""

from __future__ import annotations

from typing import Any

from contracts.envelope import derived_message_id
from contracts.people_v1 import (
    ExportPersonFromEvents,
    PersonErasedFromEvents,
    PersonErasureRequested,
)
from contracts.personal import is_erased_email, normalised_email
from kernel.commands import CommandContext
from kernel.consumer import HandlerContext
from services.events import domain, store
from services.events.facts import booking_record, reminder_record
from services.events.settings import EventsSettings


class People:
    """Erasure and export, matching a person's phone as bookings keep it."""

    def __init__(self, settings: EventsSettings) -> None:
        self.settings = settings

    def phone(self, raw: str | None) -> str | None:
        return domain.phone_to_match(raw, region=self.settings.phone_region)

    async def erase_person(self, fact: PersonErasureRequested, ctx: HandlerContext) -> None:
        """When an operator asks for a person to be erased: redact the booker of every
        booking made with their email (in any case) or phone, cancelled and waiting ones
        too, and void those bookings' pending reminders; then say so with
        ``PersonErasedFromEvents``, once per request (also when nothing was held, and for
        a request whose email is already an erased stand-in, which redacts nothing).

        The bookings stay, with their counts, prices and attendance, for reports.
        """
        redacted = 0
        if not is_erased_email(fact.email):
            found = await store.bookings_of_person(
                ctx.session, email=normalised_email(fact.email), phone=self.phone(fact.phone)
            )
            redacted = await store.redact_bookings(ctx.session, [booking for booking, _ in found])
        await ctx.publish(
            PersonErasedFromEvents(
                erasure_id=fact.erasure_id,
                erased={"bookings": redacted} if redacted else {},
                kept={},  # no law asks events to keep a booker's details
            ),
            id=derived_message_id("PersonErasedFromEvents", fact.erasure_id),
        )

    async def export_person(
        self, command: ExportPersonFromEvents, ctx: CommandContext
    ) -> dict[str, Any]:
        """Every booking made with the person's email (in any case) or phone, and the
        reminders of those bookings; empty records for a person the service never knew."""
        found = await store.bookings_of_person(
            ctx.session, email=normalised_email(command.email), phone=self.phone(command.phone)
        )
        references = {booking.id: booking.reference for booking, _ in found}
        reminders = await store.reminders_of_bookings(ctx.session, list(references))
        records = {
            "bookings": [booking_record(booking, event) for booking, event in found],
            "reminders": [
                reminder_record(reminder, references[reminder.booking_id]) for reminder in reminders
            ],
        }
        return {
            "service": "events",
            "records": {kind: rows for kind, rows in records.items() if rows},
        }
