"""The envelope every message travels in, and the base class of message bodies."""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

Kind = Literal["fact", "command"]

# Deterministic ids live in their own namespace so that the same cause always
# yields the same id, whichever process computes it.
_VESTRY_NAMESPACE = uuid.UUID("6f1c2f0e-7a52-4bb4-9d1f-3f8f5a3f2c10")
_NAMESPACE_BYTES = _VESTRY_NAMESPACE.bytes


def new_id() -> str:
    """A fresh random id: the text of a version 4 UUID, as ``str(uuid.uuid4())`` gives it,
    in half the time (rows made by the thousand: invoices, bookings, deliveries)."""
    return _uuid_text(os.urandom(16), version=4)


def new_message_id() -> str:
    """A fresh random message id, for facts no retry could recreate."""
    return new_id()


def derived_message_id(*parts: str) -> str:
    """A message id fixed by its cause, so that a retry recreates the same id: the text
    of ``uuid.uuid5`` of the parts in Vestry's namespace."""
    digest = hashlib.sha1(_NAMESPACE_BYTES + "/".join(parts).encode()).digest()
    return _uuid_text(digest, version=5)


def _uuid_text(raw: bytes, *, version: int) -> str:
    """The canonical text of the UUID with ``raw``'s first 16 bytes, its version and
    RFC 4122 variant set, as ``uuid.UUID`` spells it (ids are made by the thousand
    in a rush; this takes half the time of building a ``uuid.UUID``)."""
    octets = bytearray(raw[:16])
    octets[6] = (octets[6] & 0x0F) | (version << 4)
    octets[8] = (octets[8] & 0x3F) | 0x80
    hexed = octets.hex()
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


class Message(BaseModel):
    """Base of every message body: frozen, strict about unknown fields.

    Subclasses set ``TYPE``, ``VERSION``, ``SUBJECT`` and ``KIND``; the
    registry refuses a class that leaves one out.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    TYPE: ClassVar[str]
    VERSION: ClassVar[int]
    SUBJECT: ClassVar[str]
    KIND: ClassVar[Kind]


class Actor(BaseModel):
    """Who caused a message: a member of staff signed in to the back office.

    The web service sets it on every command a staff member's page sends; a fact a
    service publishes while handling that command inherits it (``Envelope.wrap`` with
    ``causation``), so the streams say who did what, when and from where. Messages
    that nobody in particular caused (the CLI, scheduled runs, a booker on the public
    site) carry none.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["staff"] = Field(
        default="staff", description="What sort of actor: a back-office staff account."
    )
    id: str = Field(max_length=64, description="The staff account's id in the web service.")
    name: str = Field(max_length=200, description="The staff member's name, as the audit shows it.")
    address: str | None = Field(
        default=None,
        max_length=100,
        description="Where the request came from: the client's IP address as the site saw it.",
    )


MESSAGE_ID_LENGTH = 64  # what the stores' outbox, inbox and answers keep


class Envelope(BaseModel):
    """What travels on the wire: identity, causality and the message body.

    Strict: a field of the wrong JSON type is refused, not coerced (``"version": "1"``,
    a number for ``occurred_at``), so what the schema says is what is accepted.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    id: str = Field(
        min_length=1,
        max_length=MESSAGE_ID_LENGTH,
        description="Unique message id; deterministic where a retry could recreate it. A "
        "command sent again with the same id is answered with its first answer.",
    )
    type: str = Field(
        description="Message type, e.g. MembershipStarted.", examples=["MembershipStarted"]
    )
    version: int = Field(ge=1, description="Version of the message type's schema.")
    occurred_at: AwareDatetime = Field(
        description="When the fact happened or the command was made, UTC."
    )
    correlation_id: str = Field(
        min_length=1,
        max_length=MESSAGE_ID_LENGTH,
        description="Id shared by every message of one piece of work; a command's reply "
        "carries it back.",
    )
    causation_id: str | None = Field(
        default=None,
        max_length=MESSAGE_ID_LENGTH,
        description="Id of the message that caused this one, if any.",
    )
    data: dict[str, Any] = Field(description="The message body, as the registered model dumps it.")
    # Inline, not a $ref: the Envelope's schema is copied into every message of the
    # AsyncAPI document, where a local $defs would not follow it.
    actor: Annotated[
        Actor | None,
        WithJsonSchema({"anyOf": [Actor.model_json_schema(), {"type": "null"}]}),
    ] = Field(
        default=None,
        description="Who caused it, when a member of staff did; left out of the wire form "
        "when there is none.",
    )

    @field_validator("occurred_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @classmethod
    def wrap(
        cls,
        message: Message,
        *,
        id: str | None = None,
        correlation_id: str | None = None,
        causation: Envelope | None = None,
        occurred_at: datetime | None = None,
        actor: Actor | None = None,
    ) -> Envelope:
        """Put ``message`` in an envelope; a caused message inherits its cause's correlation
        and, unless given its own, its cause's actor."""
        message_id = id or new_message_id()
        if correlation_id is None:
            correlation_id = causation.correlation_id if causation else message_id
        if actor is None and causation is not None:
            actor = causation.actor
        return cls(
            id=message_id,
            type=message.TYPE,
            version=message.VERSION,
            occurred_at=occurred_at or datetime.now(UTC),
            correlation_id=correlation_id,
            causation_id=causation.id if causation else None,
            data=message.model_dump(mode="json"),
            actor=actor,
        )

    def to_bytes(self) -> bytes:
        # Without an actor the wire form is what it was before there were actors.
        return self.model_dump_json(exclude={"actor"} if self.actor is None else None).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        return cls.model_validate_json(raw)
