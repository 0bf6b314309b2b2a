"""Messages owned by the subscriptions service, version 1."""

from __future__ import annotations

from datetime import date
from typing import Annotated, ClassVar, Literal

from pydantic import EmailStr, Field, StringConstraints

from contracts.envelope import Message
from contracts.registry import register

MemberName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=200)]
TierCode = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]


@register
class JoinMember(Message):
    """Command: enrol an organisation as a member at a tier.

    Answered with the new member's id, or an error (``invalid`` for a bad
    field, ``conflict`` when the name is already a member's).
    """

    TYPE: ClassVar[str] = "JoinMember"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "subscriptions.cmd.join_member"
    KIND: ClassVar[Literal["command"]] = "command"

    name: MemberName = Field(
        description="The organisation's name, unique in the partnership.",
        examples=["Greater Manchester Combined Authority"],
    )
    tier: TierCode = Field(
        description="Code of the tier the member joins at.", examples=["upper-tier"]
    )
    billing_email: EmailStr = Field(
        description="Where invoices go.", examples=["finance@example.gov.uk"]
    )
    joined_on: date = Field(
        description="First day of the membership (Europe/London calendar date)."
    )
    reference: str | None = Field(
        default=None,
        max_length=50,
        description="The member's own reference, e.g. a purchase order.",
    )


@register
class MembershipStarted(Message):
    """Fact: a membership began.

    Sent once when a member joins, in the same transaction that stores the
    membership. Not sent for a tier change (that is a change, not a start).
    """

    TYPE: ClassVar[str] = "MembershipStarted"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "subscriptions.membership.started"
    KIND: ClassVar[Literal["fact"]] = "fact"

    membership_id: str = Field(description="Id of the membership.")
    member_id: str = Field(description="Id of the member organisation.")
    member_name: str = Field(description="The organisation's name.")
    tier: str = Field(description="Tier code.")
    billing_email: EmailStr = Field(description="Billing contact's email.")
    starts_on: date = Field(description="First day of the membership.")


@register
class MembershipChanged(Message):
    """Fact: a membership moved to another tier.

    Sent once per tier change, in the transaction that records it. Not sent
    when a member joins or leaves.
    """

    TYPE: ClassVar[str] = "MembershipChanged"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "subscriptions.membership.changed"
    KIND: ClassVar[Literal["fact"]] = "fact"

    membership_id: str = Field(description="Id of the membership.")
    member_id: str = Field(description="Id of the member organisation.")
    member_name: str = Field(description="The organisation's name.")
    old_tier: str = Field(description="Tier code before the change.")
    new_tier: str = Field(description="Tier code from the change.")
    effective_on: date = Field(description="First day at the new tier.")


@register
class MembershipEnded(Message):
    """Fact: a member left; its membership ends on ``ends_on``.

    Sent once, when the leaving is recorded. Not sent for a tier change.
    """

    TYPE: ClassVar[str] = "MembershipEnded"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "subscriptions.membership.ended"
    KIND: ClassVar[Literal["fact"]] = "fact"

    membership_id: str = Field(description="Id of the membership.")
    member_id: str = Field(description="Id of the member organisation.")
    member_name: str = Field(description="The organisation's name.")
    ends_on: date = Field(description="Last day of the membership.")
