"""Messages owned by the notifications service, version 1."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from contracts.envelope import Message
from contracts.registry import register

Channel = Literal["email", "sms"]


@register
class DeliverySent(Message):
    """Fact: a message left for one recipient on one channel.

    Sent once per delivery ledger row, when the mail server or SMS gateway
    accepted it. Not sent for a retry of a row already sent.
    """

    TYPE: ClassVar[str] = "DeliverySent"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "notifications.delivery.sent"
    KIND: ClassVar[Literal["fact"]] = "fact"

    delivery_id: str = Field(description="Id of the ledger row.")
    cause_id: str = Field(description="Id of the message this delivery was for.")
    channel: Channel = Field(description="email or sms.")
    template: str = Field(
        description="Template the message was rendered from.", examples=["welcome"]
    )
    attempts: int = Field(ge=1, description="How many attempts it took.")


@register
class DeliveryFailed(Message):
    """Fact: a delivery was given up after its last attempt.

    Sent once per ledger row that exhausted its attempts; an operator can
    resend it. Not sent for an attempt that will be retried.
    """

    TYPE: ClassVar[str] = "DeliveryFailed"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "notifications.delivery.failed"
    KIND: ClassVar[Literal["fact"]] = "fact"

    delivery_id: str = Field(description="Id of the ledger row.")
    cause_id: str = Field(description="Id of the message this delivery was for.")
    channel: Channel = Field(description="email or sms.")
    template: str = Field(description="Template the message was rendered from.")
    attempts: int = Field(ge=1, description="How many attempts were made.")
    error: str = Field(description="The last error, as the server or gateway gave it.")
