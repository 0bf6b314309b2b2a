"""People: erasure (UK GDPR Article 17) and subject access (Article 15), across services.

An operator asks for a person to be erased with one fact on the PEOPLE stream;
every service that holds personal data handles it and says so with a fact of
its own. Once all three have, the person's key is deleted, and every fact that
named them can no longer be read. A subject-access export asks each service
what it holds on the person, with one command each.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from contracts.emails import EmailStr
from contracts.envelope import Message
from contracts.personal import PERSON_EMAIL, person_phone
from contracts.registry import register

HOLDERS: tuple[str, ...] = ("events", "subscriptions", "notifications")
"""The services that hold personal data and so must each erase and export."""

PersonEmail = Annotated[EmailStr, PERSON_EMAIL]
PersonPhone = Annotated[str | None, person_phone()]


@register
class PersonErasureRequested(Message):
    """Fact: an operator asked for a person's data to be erased (right to erasure).

    Sent once per request by ``vestry people forget``. Every holder (events,
    subscriptions, notifications) handles it once, redacting what the law does
    not require it to keep, then publishes its own ``PersonErased…`` fact. Not
    sent for a subject-access export, which changes nothing.
    """

    TYPE: ClassVar[str] = "PersonErasureRequested"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "people.erasure.requested"
    KIND: ClassVar[Literal["fact"]] = "fact"

    erasure_id: str = Field(description="Id of this request; each holder's answer names it.")
    email: PersonEmail = Field(
        description="The person's email, as every service matches it (case-insensitively).",
        examples=["jo.bloggs@bury.example.gov.uk"],
    )
    phone: PersonPhone = Field(
        default=None, max_length=30, description="The person's mobile, if known, in E.164."
    )


class _PersonErased(Message):
    """Fields every holder's erasure fact carries."""

    KIND: ClassVar[Literal["fact"]] = "fact"
    VERSION: ClassVar[int] = 1

    erasure_id: str = Field(description="The request this answers.")
    erased: dict[str, int] = Field(
        default_factory=dict,
        description="What was erased or redacted, by kind of record, e.g. bookings: 2.",
    )
    kept: dict[str, int] = Field(
        default_factory=dict,
        description="What was kept because the law requires it, by kind, e.g. invoices: 1.",
    )


@register
class PersonErasedFromEvents(_PersonErased):
    """Fact: the events service has redacted a person's bookings.

    Sent once per ``PersonErasureRequested`` the events service handles, even
    when it held nothing on them (``erased`` is then empty).
    """

    TYPE: ClassVar[str] = "PersonErasedFromEvents"
    SUBJECT: ClassVar[str] = "events.person.erased"


@register
class PersonErasedFromSubscriptions(_PersonErased):
    """Fact: the subscriptions service has removed a person from members and invoices,
    keeping invoices (with the legal customer's name and address) as HMRC requires.

    Sent once per ``PersonErasureRequested`` it handles, even when it held nothing.
    """

    TYPE: ClassVar[str] = "PersonErasedFromSubscriptions"
    SUBJECT: ClassVar[str] = "subscriptions.person.erased"


@register
class PersonErasedFromNotifications(_PersonErased):
    """Fact: the notifications service has forgotten a person: contact, consents,
    topics and the addresses and contents of their messages.

    Sent once per ``PersonErasureRequested`` it handles, even when it held nothing.
    """

    TYPE: ClassVar[str] = "PersonErasedFromNotifications"
    SUBJECT: ClassVar[str] = "notifications.person.erased"


ERASED_FACTS: dict[str, type[_PersonErased]] = {
    "events": PersonErasedFromEvents,
    "subscriptions": PersonErasedFromSubscriptions,
    "notifications": PersonErasedFromNotifications,
}


class _ExportPerson(Message):
    """Fields every holder's subject-access command takes."""

    KIND: ClassVar[Literal["command"]] = "command"
    VERSION: ClassVar[int] = 1

    email: EmailStr = Field(description="The person's email, matched case-insensitively.")
    phone: str | None = Field(
        default=None, max_length=30, description="The person's mobile, if known, in E.164."
    )


@register
class ExportPersonFromEvents(_ExportPerson):
    """Command: everything the events service holds on a person (right of access).

    Answers ``{"service": "events", "records": {kind: [record, ...]}}``; changes nothing.
    """

    TYPE: ClassVar[str] = "ExportPersonFromEvents"
    SUBJECT: ClassVar[str] = "events.cmd.export_person"


@register
class ExportPersonFromSubscriptions(_ExportPerson):
    """Command: everything the subscriptions service holds on a person (right of access).

    Answers ``{"service": "subscriptions", "records": {kind: [record, ...]}}``; changes
    nothing.
    """

    TYPE: ClassVar[str] = "ExportPersonFromSubscriptions"
    SUBJECT: ClassVar[str] = "subscriptions.cmd.export_person"


@register
class ExportPersonFromNotifications(_ExportPerson):
    """Command: everything the notifications service holds on a person (right of access).

    Answers ``{"service": "notifications", "records": {kind: [record, ...]}}``; changes
    nothing.
    """

    TYPE: ClassVar[str] = "ExportPersonFromNotifications"
    SUBJECT: ClassVar[str] = "notifications.cmd.export_person"


EXPORT_COMMANDS: dict[str, type[_ExportPerson]] = {
    "events": ExportPersonFromEvents,
    "subscriptions": ExportPersonFromSubscriptions,
    "notifications": ExportPersonFromNotifications,
}
