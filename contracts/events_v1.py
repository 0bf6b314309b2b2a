"""Messages owned by the events service, version 1."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from contracts.emails import EmailStr
from contracts.envelope import Message
from contracts.money import Money
from contracts.personal import PERSON_EMAIL, person_name, person_phone
from contracts.registry import register

EventKind = Literal["workshop", "seminar", "forum", "training_course", "conference"]
Programme = Literal[
    "business_process_improvement",
    "project_and_programme_management",
    "customer_service",
    "information_sharing_and_security",
]
EventStatus = Literal["draft", "published", "cancelled", "completed"]
BookingStatus = Literal["confirmed", "waitlisted", "cancelled"]
Channel = Literal["web", "phone", "in-person"]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=200)]
PersonName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
EventId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
Reference = Annotated[
    str, StringConstraints(strip_whitespace=True, to_upper=True, min_length=4, max_length=20)
]


class CalendarEntry(BaseModel):
    """What an iCalendar (RFC 5545) attachment for the event needs.

    ``uid`` never changes for an event; ``sequence`` rises with every change
    the attendee should see (time, venue, cancellation), so calendar clients
    replace the entry instead of adding another.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    uid: str = Field(description="The event's iCalendar UID, stable for its life.")
    sequence: int = Field(ge=0, description="iCalendar SEQUENCE: 0 when published, +1 per change.")
    summary: str = Field(description="The event's title.")
    description: str = Field(description="The event's description.")
    starts_at: AwareDatetime = Field(description="DTSTART, UTC.")
    ends_at: AwareDatetime = Field(description="DTEND, UTC.")
    location: str | None = Field(default=None, description="Venue, if it meets in person.")
    url: str | None = Field(default=None, description="Online link, if any.")
    status: Literal["CONFIRMED", "CANCELLED"] = Field(
        description="iCalendar STATUS; CANCELLED goes with METHOD:CANCEL."
    )
    timezone: str = Field(
        default="Europe/London", description="Zone people see the times in (TZID)."
    )


class Booker(BaseModel):
    """The person a booking is for, and how they may be reached."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, person_name()] = Field(description="The person's name.")
    email: Annotated[EmailStr, PERSON_EMAIL] = Field(
        description="Where confirmations, changes and reminders go."
    )
    phone: Annotated[str | None, person_phone()] = Field(
        default=None, description="Mobile number in E.164, if given."
    )
    sms: bool = Field(default=False, description="Whether they opted in to SMS.")


class Attendee(BaseModel):
    """A confirmed booking to tell about a change to its event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    booking_id: str = Field(description="Id of the booking.")
    reference: str = Field(description="The booking's short reference.")
    booker: Booker = Field(description="Who to tell.")


@register
class BookingChargeable(Message):
    """Fact: a confirmed booking carries a fee to invoice.

    Sent once per booking, when it is confirmed (directly or promoted from the
    waiting list) and its price is above zero: a non-member's fee or a paid
    course. Not sent for free places, nor again when the booking changes.
    """

    TYPE: ClassVar[str] = "BookingChargeable"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.booking.chargeable"
    KIND: ClassVar[Literal["fact"]] = "fact"

    booking_id: str = Field(description="Id of the booking.")
    reference: str = Field(description="The booking's short reference, as the booker sees it.")
    event_id: str = Field(description="Id of the event.")
    event_title: str = Field(description="The event's title, for the invoice line.")
    event_starts_at: AwareDatetime = Field(description="When the event starts, UTC.")
    member_id: str | None = Field(
        default=None, description="The booking organisation, if a member."
    )
    organisation_name: str | None = Field(
        default=None, description="The booking organisation's name."
    )
    booker_name: Annotated[str, person_name("booker_email")] = Field(
        description="The person who booked."
    )
    booker_email: Annotated[EmailStr, PERSON_EMAIL] = Field(
        description="Where the invoice goes when no member is billed."
    )
    fee: Money = Field(description="The fee, VAT exclusive.")
    member_price: bool = Field(description="Whether the member price was applied.")
    refund_until: AwareDatetime | None = Field(
        default=None, description="A cancellation up to this instant is credited; none after."
    )


@register
class BookingCancelled(Message):
    """Fact: a booking (confirmed or waiting) was cancelled.

    Sent once per booking: when the booker cancels, or when the event is
    cancelled (``reason`` says which). Not sent for a booking already cancelled.
    """

    TYPE: ClassVar[str] = "BookingCancelled"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.booking.cancelled"
    KIND: ClassVar[Literal["fact"]] = "fact"

    booking_id: str = Field(description="Id of the booking.")
    reference: str = Field(description="The booking's short reference.")
    event_id: str = Field(description="Id of the event.")
    cancelled_at: AwareDatetime = Field(description="When it was cancelled, UTC.")
    reason: Literal["booker", "event_cancelled", "organiser"] = Field(
        description="Who or what cancelled it."
    )
    was: Literal["confirmed", "waitlisted"] = Field(description="The booking's status before.")
    event_title: str | None = Field(default=None, description="The event's title, for the message.")
    event_reason: str | None = Field(
        default=None,
        max_length=500,
        description="Why the event was cancelled, in the organiser's words, for the booker; "
        "only when reason is event_cancelled and the organiser gave one.",
    )
    booker: Booker | None = Field(default=None, description="Who to tell.")
    calendar: CalendarEntry | None = Field(
        default=None,
        description="The calendar entry to cancel (STATUS:CANCELLED, SEQUENCE raised).",
    )


# Facts


class _EventFacts(Message):
    """Fields every event fact carries."""

    KIND: ClassVar[Literal["fact"]] = "fact"

    event_id: str = Field(description="Id of the event.")
    title: str = Field(description="The event's title.")
    kind: EventKind = Field(description="Workshop, seminar, forum, training course or conference.")
    programme: Programme = Field(description="The programme the event belongs to.")
    calendar: CalendarEntry = Field(description="The event as a calendar entry.")


@register
class EventPublished(_EventFacts):
    """Fact: an event was published and is open for booking (within its window).

    Sent once per event, when it leaves draft. Not sent for drafts, nor again
    when a published event changes (that is ``EventChanged``).
    """

    TYPE: ClassVar[str] = "EventPublished"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.event.published"

    capacity: int = Field(description="Places.")
    member_price: Money = Field(description="Price for a member organisation's people.")
    non_member_price: Money = Field(description="Price for everyone else.")
    booking_opens_at: AwareDatetime | None = Field(description="Bookings taken from, UTC.")
    booking_closes_at: AwareDatetime = Field(description="Bookings taken until, UTC.")


class Schedule(BaseModel):
    """When and where an event runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    starts_at: AwareDatetime = Field(description="When it starts, UTC.")
    ends_at: AwareDatetime = Field(description="When it ends, UTC.")
    location: str | None = Field(default=None, description="Venue, if it meets in person.")
    url: str | None = Field(default=None, description="Online link, if any.")


@register
class EventChanged(_EventFacts):
    """Fact: a published event changed in a way its attendees may care about.

    Sent once per accepted update of a published event; ``moved`` says the
    time or venue changed, in which case every confirmed attendee (listed in
    ``attendees``) should hear and their reminders were rescheduled. Not sent
    for changes to drafts, nor for an update that changed nothing.
    """

    TYPE: ClassVar[str] = "EventChanged"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.event.changed"

    changed: list[str] = Field(description="Names of the fields that changed.")
    moved: bool = Field(description="Whether the time or the venue changed.")
    capacity: int = Field(description="Places, after the change.")
    was: Schedule | None = Field(
        default=None,
        description="When and where the event was before the change, so a message can say "
        "what it was as well as what it is; absent from facts sent before it was added.",
    )
    attendees: list[Attendee] = Field(
        description="Confirmed bookings to tell, when the event moved; empty otherwise."
    )


@register
class EventCancelled(_EventFacts):
    """Fact: an event was cancelled.

    Sent once per event, before the ``BookingCancelled`` fact of each of its
    bookings (which are what reach the people). Not sent for an event already
    cancelled or completed.
    """

    TYPE: ClassVar[str] = "EventCancelled"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.event.cancelled"

    cancelled_at: AwareDatetime = Field(description="When it was cancelled, UTC.")
    reason: str | None = Field(default=None, description="Why, in the organiser's words.")
    bookings_cancelled: int = Field(description="Bookings cancelled with it.")


class _BookingFacts(Message):
    """Fields every booking fact carries."""

    KIND: ClassVar[Literal["fact"]] = "fact"

    booking_id: str = Field(description="Id of the booking.")
    reference: str = Field(description="The booking's short reference, as the booker sees it.")
    event_id: str = Field(description="Id of the event.")
    event_title: str = Field(description="The event's title.")
    booker: Booker = Field(description="Who booked, and how to reach them.")
    member_id: str | None = Field(
        default=None, description="The booking organisation, if a member."
    )
    organisation_name: str | None = Field(
        default=None, description="The booking organisation's name."
    )
    channel: Channel = Field(description="How the booking was made: web, phone or in person.")


@register
class BookingConfirmed(_BookingFacts):
    """Fact: a booking was confirmed on the spot: a place is held.

    Sent once per booking that got a place when it was made. Not sent for a
    booking that joined the waiting list (``BookingWaitlisted``) nor when one
    is later promoted (``BookingPromoted``).
    """

    TYPE: ClassVar[str] = "BookingConfirmed"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.booking.confirmed"

    price: Money = Field(description="What the place costs, VAT exclusive; zero when free.")
    member_price: bool = Field(description="Whether the member price applied.")
    calendar: CalendarEntry = Field(description="The calendar entry to attach.")


@register
class BookingWaitlisted(_BookingFacts):
    """Fact: a booking joined the event's waiting list, the event being full.

    Sent once per booking that found no place when it was made. Not sent for
    confirmed bookings.
    """

    TYPE: ClassVar[str] = "BookingWaitlisted"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.booking.waitlisted"

    position: int = Field(ge=1, description="Place in the waiting list when it joined (1 = next).")


@register
class BookingPromoted(_BookingFacts):
    """Fact: a waiting booking got a place, because a confirmed one was cancelled or
    capacity rose.

    Sent once per promotion, in the transaction that made room. Not sent for
    bookings confirmed on the spot.
    """

    TYPE: ClassVar[str] = "BookingPromoted"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.booking.promoted"

    price: Money = Field(description="What the place costs, VAT exclusive; zero when free.")
    member_price: bool = Field(description="Whether the member price applied.")
    calendar: CalendarEntry = Field(description="The calendar entry to attach.")


@register
class ReminderDue(_BookingFacts):
    """Fact: it is time to remind a confirmed booker of their event.

    Sent once per (booking, offset, event schedule): at each configured offset
    before the start (by default 7 days and 1 day). Recomputed when the event
    moves; never sent for a cancelled booking or event, nor for an offset that
    had already passed when the place was confirmed.
    """

    TYPE: ClassVar[str] = "ReminderDue"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.reminder.due"

    reminder_id: str = Field(description="Id of the scheduled reminder.")
    due_at: AwareDatetime = Field(description="When it was due, UTC.")
    hours_before: int = Field(description="How long before the start it was due, in hours.")
    calendar: CalendarEntry = Field(description="The calendar entry, as it stands.")


@register
class AttendanceRecorded(Message):
    """Fact: a confirmed booker's attendance was recorded.

    Sent once per confirmed booking: ``attended`` when they checked in, or
    ``no_show`` when the event ended without their checking in. Not sent for
    cancelled or waiting bookings.
    """

    TYPE: ClassVar[str] = "AttendanceRecorded"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.attendance.recorded"
    KIND: ClassVar[Literal["fact"]] = "fact"

    booking_id: str = Field(description="Id of the booking.")
    reference: str = Field(description="The booking's short reference.")
    event_id: str = Field(description="Id of the event.")
    outcome: Literal["attended", "no_show"] = Field(description="Whether they came.")
    recorded_at: AwareDatetime = Field(description="When it was recorded, UTC.")
    member_id: str | None = Field(
        default=None, description="The booking organisation, if a member."
    )
    organisation_name: str | None = Field(
        default=None, description="The booking organisation's name."
    )


# Commands (each answered with a Reply; a refusal names its code and field)


class _Command(Message):
    KIND: ClassVar[Literal["command"]] = "command"


@register
class CreateEvent(_Command):
    """Command: add an event, as a draft.

    Answered with the event's id. Refused (``invalid``) when the end is not
    after the start, the booking window does not close by the start, or a
    price is negative.
    """

    TYPE: ClassVar[str] = "CreateEvent"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.cmd.create_event"

    kind: EventKind = Field(description="Workshop, seminar, forum, training course or conference.")
    programme: Programme = Field(description="The programme the event belongs to.")
    title: Title = Field(description="The event's title.", examples=["Lean in local government"])
    description: str = Field(default="", max_length=5000, description="What it is about.")
    venue: str | None = Field(default=None, max_length=300, description="Where it meets.")
    online_url: str | None = Field(default=None, max_length=500, description="Online link.")
    starts_at: AwareDatetime = Field(description="Start; entered in Europe/London, any offset.")
    ends_at: AwareDatetime = Field(description="End.")
    capacity: int = Field(ge=1, le=100_000, description="Places.")
    member_price: Money = Field(description="Price for a member organisation's people.")
    non_member_price: Money = Field(description="Price for everyone else.")
    booking_opens_at: AwareDatetime | None = Field(
        default=None, description="Bookings taken from (default: when published)."
    )
    booking_closes_at: AwareDatetime | None = Field(
        default=None, description="Bookings taken until (default: the start)."
    )
    places_per_organisation: int | None = Field(
        default=None, ge=1, description="Most places one organisation may hold, if limited."
    )
    waiting_list: bool = Field(
        default=True, description="Whether a full event takes a waiting list."
    )


@register
class UpdateEvent(_Command):
    """Command: change an event's details; fields left out (or null) stay as they are.

    Answered with what changed. Refused (``invalid``) for a capacity below the
    confirmed places or an end not after the start; (``closed``) for an event
    cancelled or completed.
    """

    TYPE: ClassVar[str] = "UpdateEvent"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.cmd.update_event"

    event_id: EventId = Field(description="Id of the event.")
    title: Title | None = Field(default=None, description="New title.")
    description: str | None = Field(default=None, max_length=5000, description="New description.")
    venue: str | None = Field(default=None, max_length=300, description="New venue.")
    online_url: str | None = Field(default=None, max_length=500, description="New online link.")
    starts_at: AwareDatetime | None = Field(default=None, description="New start.")
    ends_at: AwareDatetime | None = Field(default=None, description="New end.")
    capacity: int | None = Field(default=None, ge=1, le=100_000, description="New capacity.")
    member_price: Money | None = Field(default=None, description="New member price.")
    non_member_price: Money | None = Field(default=None, description="New non-member price.")
    booking_closes_at: AwareDatetime | None = Field(default=None, description="New closing time.")
    places_per_organisation: int | None = Field(default=None, ge=1, description="New limit.")
    clear: list[Literal["venue", "online_url", "places_per_organisation"]] = Field(
        default=[], description="Optional details to remove (a field left out stays as it is)."
    )


@register
class PublishEvent(_Command):
    """Command: publish a draft event, opening it for booking. Refused unless a draft."""

    TYPE: ClassVar[str] = "PublishEvent"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.cmd.publish_event"

    event_id: EventId = Field(description="Id of the event.")


@register
class CancelEvent(_Command):
    """Command: cancel an event and every booking on it.

    Answered with the number of bookings cancelled. Refused (``closed``) for an
    event already cancelled or completed.
    """

    TYPE: ClassVar[str] = "CancelEvent"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.cmd.cancel_event"

    event_id: EventId = Field(description="Id of the event.")
    reason: str | None = Field(default=None, max_length=500, description="Why, for the attendees.")


@register
class ListEvents(_Command):
    """Command: list events, soonest first. Changes nothing."""

    TYPE: ClassVar[str] = "ListEvents"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.cmd.list_events"

    status: EventStatus | None = Field(default=None, description="Only events in this status.")
    programme: Programme | None = Field(default=None, description="Only this programme's events.")


@register
class ShowEvent(_Command):
    """Command: one event with places left and the waiting list's length. Changes nothing."""

    TYPE: ClassVar[str] = "ShowEvent"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.cmd.show_event"

    event_id: EventId = Field(description="Id of the event.")


@register
class EventFeed(_Command):
    """Command: the upcoming published events as an iCalendar or Atom document. Changes nothing."""

    TYPE: ClassVar[str] = "EventFeed"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.cmd.feed"

    format: Literal["ics", "atom"] = Field(description="ics (RFC 5545) or atom (RFC 4287).")


@register
class EventCalendar(_Command):
    """Command: one published or cancelled event as an iCalendar file, for a person to add
    to their calendar; with a booking's reference, that booking's entry, under the UID its
    invitations carry (``contracts.calendar.invitation_uid``), so a calendar holding one
    replaces it with the other. Refused (``not_found``) for an unknown or draft event, and
    for a reference that is not a place booked at it (a waiting-list booking has none
    yet). Changes nothing."""

    TYPE: ClassVar[str] = "EventCalendar"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.cmd.event_calendar"

    event_id: EventId = Field(description="Id of the event.")
    reference: Reference | None = Field(
        default=None,
        description="A booking's reference: the file is that booking's entry, cancelled "
        "if the booking is.",
    )


@register
class EventReport(_Command):
    """Command: bookings and attendance of one event. Changes nothing."""

    TYPE: ClassVar[str] = "EventReport"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.cmd.report"

    event_id: EventId = Field(description="Id of the event.")


FinancialYear = Annotated[int, Field(ge=2000, le=2100)]


class ChannelCosts(BaseModel):
    """What one booking costs the partnership to take through each channel."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    web: Money = Field(description="A booking a person makes on the site.")
    phone: Money = Field(description="A booking staff take by phone.")
    in_person: Money = Field(description="A booking staff take face to face.")


@register
class ChannelShiftReport(_Command):
    """Command: bookings made in a financial year by channel (web, phone, in person), per
    month and programme, each at its unit cost, and what the web bookings saved against
    taking each of them by phone. Changes nothing.

    A booking counts in the London month it was made, whatever became of it since
    (waiting, cancelled, erased): it was a booking taken through its channel.
    """

    TYPE: ClassVar[str] = "ChannelShiftReport"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.cmd.channel_shift_report"

    year: FinancialYear = Field(
        description="Financial year: 2026 is bookings made from 1 April 2026 to 31 March 2027."
    )
    programme: Programme | None = Field(
        default=None, description="Only bookings for this programme's events."
    )
    unit_costs: ChannelCosts = Field(description="What a booking costs through each channel.")


@register
class OrganisationsReport(_Command):
    """Command: how many different organisations attended each event starting in a
    financial year (published or held; not drafts or cancelled events) and each programme
    across its events, as partnerships measure reach. Changes nothing.

    An organisation counts once it has one checked-in booking: by member id, or by name
    for non-members; a person booking for no organisation adds none.
    """

    TYPE: ClassVar[str] = "OrganisationsReport"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.cmd.organisations_report"

    year: FinancialYear = Field(
        description="Financial year: 2026 is events starting from 1 April 2026 to 31 March 2027."
    )
    programme: Programme | None = Field(default=None, description="Only this programme's events.")


@register
class BookPlace(_Command):
    """Command: book a place for a person.

    Answered with the booking's reference and status (confirmed, or
    waitlisted with a position). Refused: ``not_found`` (no such event),
    ``closed`` (not open for booking now), ``full`` (no waiting list),
    ``duplicate`` (this email already holds a booking), ``over_limit`` (the
    organisation's places are taken), ``invalid`` (a bad field).
    """

    TYPE: ClassVar[str] = "BookPlace"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.cmd.book"

    event_id: EventId = Field(description="Id of the event.")
    name: PersonName = Field(description="The person's name.")
    email: EmailStr = Field(description="The person's email.")
    phone: str | None = Field(
        default=None, max_length=40, description="Mobile number; UK numbers may omit +44."
    )
    sms: bool = Field(default=False, description="Whether they opt in to SMS (needs a phone).")
    member_id: str | None = Field(
        default=None, max_length=40, description="Member organisation id."
    )
    organisation_name: str | None = Field(
        default=None, max_length=200, description="Organisation's name, when not a member id."
    )
    channel: Channel = Field(default="web", description="web, phone or in-person.")


@register
class CancelBooking(_Command):
    """Command: cancel a booking by its reference.

    Answered with the booking and whom it promoted. Refused (``closed``) once
    the event has started, or (``conflict``) for a booking already cancelled.
    """

    TYPE: ClassVar[str] = "CancelBooking"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.cmd.cancel_booking"

    reference: Reference = Field(description="The booking's reference.")


@register
class ShowBooking(_Command):
    """Command: a booking's status and waiting-list position. Changes nothing."""

    TYPE: ClassVar[str] = "ShowBooking"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.cmd.show_booking"

    reference: Reference = Field(description="The booking's reference.")


@register
class ListBookings(_Command):
    """Command: an event's bookings, in order of arrival. Changes nothing."""

    TYPE: ClassVar[str] = "ListBookings"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.cmd.list_bookings"

    event_id: EventId = Field(description="Id of the event.")


@register
class CheckIn(_Command):
    """Command: record that a confirmed booker arrived.

    Refused (``conflict``) for a booking not confirmed; a second check-in of
    the same booking answers as the first did and records nothing more.
    """

    TYPE: ClassVar[str] = "CheckIn"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "events.cmd.check_in"

    reference: Reference = Field(description="The booking's reference.")
