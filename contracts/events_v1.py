"""Messages owned by the events service, version 1."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, EmailStr, Field

from contracts.envelope import Message
from contracts.money import Money
from contracts.registry import register


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
    member_id: str | None = Field(default=None, description="The booking organisation, if a member.")
    organisation_name: str | None = Field(default=None, description="The booking organisation's name.")
    booker_name: str = Field(description="The person who booked.")
    booker_email: EmailStr = Field(description="Where the invoice goes when no member is billed.")
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
