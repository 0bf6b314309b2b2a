"""Messages owned by the notifications service, version 1."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, StringConstraints

from contracts.emails import EmailStr
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
    provider_id: str | None = Field(
        default=None, description="The SMS gateway's id for the message, for SMS."
    )
    segments: int | None = Field(default=None, description="SMS parts the text took, for SMS.")


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


@register
class BroadcastCompleted(Message):
    """Fact: every delivery of a broadcast is settled, sent or failed.

    Sent once per broadcast, when its last ledger row is sent or given up;
    not sent while any row is pending or deferred (quiet hours), and not for
    a broadcast that found nobody to send to (its command answers that).
    """

    TYPE: ClassVar[str] = "BroadcastCompleted"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "notifications.broadcast.completed"
    KIND: ClassVar[Literal["fact"]] = "fact"

    broadcast_id: str = Field(description="Id of the broadcast.")
    topic: str = Field(description="The topic it went to.", examples=["warp"])
    template: str = Field(description="The template it was rendered from.")
    channels: list[Channel] = Field(description="The channels it went by.")
    recipients: int = Field(description="Subscribers of the topic when it was sent.")
    sent: int = Field(description="Deliveries sent.")
    failed: int = Field(description="Deliveries given up.")
    skipped_for_consent: int = Field(
        description="Subscriber × channel pairs skipped: no consent or no address on that channel."
    )


# Commands (each answered with a Reply; a refusal names its code and field)


class _Command(Message):
    KIND: ClassVar[Literal["command"]] = "command"


# The topics a contact can follow: the four programmes, the special-interest
# groups, the newsletter and the warning, advice and reporting point.
TOPICS: dict[str, str] = {
    "business_process_improvement": "Business Process Improvement programme",
    "project_and_programme_management": "Right Track North West project management",
    "customer_service": "Customer Service Management programme",
    "information_sharing_and_security": "Information Sharing and Security programme",
    "warp": "WARP security advisories",
    "newsletter": "The partnership's newsletter",
    "waste_and_recycling": "Waste collection and recycling notices",
    "digital": "Digital and ICT special-interest group",
    "procurement": "Procurement special-interest group",
}

ContactRef = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=320)]
Topic = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=60)
]


@register
class AddContact(_Command):
    """Command: add a contact, or update the one with this email.

    Answered with the contact. Refused (``invalid``, field ``mobile``) for a
    number that is not a valid mobile, (``not_found``, field ``topics``) for
    an unknown topic, (``invalid``) for SMS consent without a mobile.
    """

    TYPE: ClassVar[str] = "AddContact"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "notifications.cmd.add_contact"

    email: EmailStr = Field(description="The contact's email.")
    name: str | None = Field(default=None, max_length=200, description="The person's name.")
    organisation: str | None = Field(
        default=None, max_length=200, description="Their organisation."
    )
    mobile: str | None = Field(
        default=None, max_length=40, description="Mobile number; UK numbers may leave out +44."
    )
    email_consent: bool = Field(default=True, description="Agrees to broadcasts by email.")
    sms_consent: bool = Field(default=False, description="Agrees to SMS (needs a mobile).")
    topics: list[Topic] = Field(default=[], description="Topics to subscribe to.")


@register
class ListContacts(_Command):
    """Command: one page of contacts, by email. Changes nothing.

    Answered with ``contacts`` and ``next``: the cursor to send as ``after`` for the
    following page, or null after the last. A page is at most 500 contacts, so no
    answer nears the size NATS may carry, however many people there are.
    """

    TYPE: ClassVar[str] = "ListContacts"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "notifications.cmd.list_contacts"

    topic: Topic | None = Field(default=None, description="Only subscribers of this topic.")
    search: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = Field(
        default=None,
        description="Only people whose email, name or organisation contains this, in any case.",
    )
    after: ContactRef | None = Field(
        default=None, description="Start after this email: the previous page's next."
    )
    limit: int = Field(default=100, ge=1, le=500, description="At most this many on the page.")


@register
class ShowContact(_Command):
    """Command: one contact, their consents, topics and latest deliveries. Changes nothing."""

    TYPE: ClassVar[str] = "ShowContact"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "notifications.cmd.show_contact"

    contact: ContactRef = Field(description="The contact's id or email.")


@register
class Subscribe(_Command):
    """Command: subscribe a contact to topics, and record consent to channels.

    Refused (``not_found``) for an unknown contact or topic; (``invalid``)
    for SMS consent without a mobile.
    """

    TYPE: ClassVar[str] = "Subscribe"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "notifications.cmd.subscribe"

    contact: ContactRef = Field(description="The contact's id or email.")
    topics: list[Topic] = Field(default=[], description="Topics to add.")
    channels: list[Channel] = Field(default=[], description="Channels they now consent to.")


@register
class Unsubscribe(_Command):
    """Command: take a contact off topics, or withdraw consent to channels.

    Refused (``not_found``) for an unknown contact or topic.
    """

    TYPE: ClassVar[str] = "Unsubscribe"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "notifications.cmd.unsubscribe"

    contact: ContactRef = Field(description="The contact's id or email.")
    topics: list[Topic] = Field(default=[], description="Topics to leave.")
    channels: list[Channel] = Field(default=[], description="Channels they withdraw consent to.")


@register
class ForgetContact(_Command):
    """Command: erase a contact's personal data (right to erasure).

    The contact, their topics and consents go; ledger rows keep only a digest
    of the address, so a replayed fact sends them nothing. Refused
    (``not_found``) for an unknown contact.
    """

    TYPE: ClassVar[str] = "ForgetContact"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "notifications.cmd.forget_contact"

    contact: ContactRef = Field(description="The contact's id or email.")


@register
class SendBroadcast(_Command):
    """Command: send a message to every subscriber of a topic, on each consented channel, once.

    Answered with the broadcast's id and how many deliveries were planned and
    skipped for consent. The same command sent again (same message id)
    answers the same broadcast and plans nothing more. Refused, with nothing
    planned: ``not_found`` (unknown topic or template), ``invalid`` (a channel
    the template lacks, or data missing a variable the template needs).
    """

    TYPE: ClassVar[str] = "SendBroadcast"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "notifications.cmd.broadcast"

    topic: Topic = Field(description="Who hears it: the topic's subscribers.", examples=["warp"])
    channels: list[Channel] = Field(min_length=1, description="email, sms or both.")
    template: str = Field(min_length=1, max_length=60, description="Template name.")
    data: dict[str, Any] = Field(default={}, description="Values for the template.")
    urgent: bool = Field(default=False, description="Urgent SMS go out in quiet hours too.")


@register
class BroadcastStatus(_Command):
    """Command: a broadcast's deliveries by status. Changes nothing."""

    TYPE: ClassVar[str] = "BroadcastStatus"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "notifications.cmd.broadcast_status"

    broadcast_id: str = Field(description="Id of the broadcast.")


@register
class ResendDelivery(_Command):
    """Command: try a failed delivery again, with its retries afresh.

    Answered with the delivery. Refused (``not_found``) for an unknown
    delivery, (``conflict``) for one not failed or whose recipient was
    forgotten. A resend that succeeds publishes ``DeliverySent``.
    """

    TYPE: ClassVar[str] = "ResendDelivery"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "notifications.cmd.resend"

    delivery_id: str = Field(min_length=1, max_length=36, description="Id of the ledger row.")


@register
class PreviewBroadcast(_Command):
    """Query: a broadcast as its subscribers would get it, before it is sent. Changes nothing.

    Answered with the email (``subject``, ``text``, ``html``) and the SMS (its ``text``,
    ``encoding``, ``units``, ``segments`` as the SMS gateway counts them, the ``limit`` and
    ``within_limit``) rendered from ``data`` as SendBroadcast would render them; with
    ``reach``, how many of the topic's subscribers it would reach by email and by SMS; and
    with ``templates``, each template a broadcast may use, its channels and the values it
    needs. Refused as SendBroadcast is (``not_found`` for an unknown topic or template,
    ``invalid`` for data missing a value the template needs), but an SMS over the limit is
    answered, with ``within_limit`` false, so that the composer can say so.
    """

    TYPE: ClassVar[str] = "PreviewBroadcast"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "notifications.cmd.preview_broadcast"

    topic: Topic | None = Field(
        default=None, description="Whose subscribers to count; without one, nobody is counted."
    )
    channels: list[Channel] = Field(
        default=[], description="The channels to render; every channel of the template if empty."
    )
    template: str = Field(
        default="broadcast", min_length=1, max_length=60, description="Template name."
    )
    data: dict[str, Any] = Field(default={}, description="Values for the template.")


DeliveryStatus = Literal["failed", "deferred", "pending", "sent"]


@register
class ListDeliveries(_Command):
    """Query: one page of the delivery ledger. Changes nothing.

    Failed deliveries come first, then those deferred to the end of quiet hours, then
    those still to send, then those sent; newest first within each. Answered with
    ``deliveries``, ``counts`` (how many of each status the filter finds) and ``next``:
    the cursor to send as ``after`` for the following page, or null after the last. A
    page is at most 500 deliveries. A forgotten person's rows show no address.
    """

    TYPE: ClassVar[str] = "ListDeliveries"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "notifications.cmd.list_deliveries"

    status: DeliveryStatus | None = Field(
        default=None, description="Only deliveries in this state."
    )
    broadcast_id: str | None = Field(
        default=None, max_length=36, description="Only the deliveries of this broadcast."
    )
    after: str | None = Field(
        default=None,
        max_length=200,
        description="Start after this cursor: the previous page's next.",
    )
    limit: int = Field(default=50, ge=1, le=500, description="At most this many on the page.")
