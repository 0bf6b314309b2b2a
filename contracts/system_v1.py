"""What every service answers, whatever it owns: health, and the reply shape of commands."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

SERVICES = ("subscriptions", "events", "notifications")
# The HTTP door: answers health like a service, owns no stream and no business data.
DOORS = ("web",)


def health_subject(service: str) -> str:
    """Request subject a service answers with its ``HealthReport``."""
    return f"{service}.cmd.health"


class CommandError(BaseModel):
    """Why a command was refused. Nothing was changed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(
        description="Machine-readable reason: invalid, conflict, not_found, busy, too_large "
        "(the answer would not fit in one message: page or narrow the query), internal, …",
        examples=["invalid"],
    )
    message: str = Field(description="What went wrong, in words a person can act on.")
    field: str | None = Field(default=None, description="The input field at fault, if one is.")


class Reply(BaseModel):
    """Every command's answer: ``ok`` with ``data``, or not ok with ``error``.

    Sent once per request, on its reply subject. A command sent again with the same
    envelope id (a client retrying after a lost reply) is answered with the bytes of
    its first answer and changes nothing, within the service's answer retention
    (``VESTRY_COMMAND_ANSWER_RETENTION_S``); the same id with a different command is
    refused ``conflict`` on ``id``. Not kept, so worked out afresh on a retry: a query's
    answer, ``invalid`` and ``unsupported`` refusals of a request that did not validate,
    ``too_large`` and ``internal``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    data: dict[str, Any] | None = None
    error: CommandError | None = None
    request_id: str | None = Field(
        default=None,
        description="The id of the envelope this answers; absent when the request could not "
        "be read far enough to find one.",
    )
    correlation_id: str | None = Field(
        default=None,
        description="The correlation id of the envelope this answers (the first request's, "
        "when a retry is answered with the first answer); absent like request_id.",
    )


class ConsumerLag(BaseModel):
    model_config = ConfigDict(frozen=True)

    stream: str
    consumer: str
    pending: int = Field(description="Messages not yet delivered to the consumer.")
    ack_pending: int = Field(description="Messages delivered but not yet acknowledged.")
    redelivered: int = Field(description="Messages delivered more than once so far.")


class HealthReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    service: str
    version: str
    pid: int
    store: str = Field(description="The store's URL, without credentials.")
    outbox_unsent: int = Field(description="Facts written but not yet in JetStream.")
    backlog: int = Field(
        default=0, description="Work the service owes beyond its consumers, e.g. mail due."
    )
    consumers: list[ConsumerLag]


def replay_subject(service: str) -> str:
    """Request subject on which a service replays part of a stream into itself."""
    return f"{service}.cmd.replay"


def redrive_subject(service: str) -> str:
    """Request subject on which a service takes back its dead letters."""
    return f"{service}.cmd.redrive"


class ReplayRequest(BaseModel):
    """Replay part of ``stream`` into the service, through its idempotent path.

    Start at ``from_seq`` or ``since`` (else the stream's start); stop at
    ``to_seq`` or ``until`` (else the stream's end when the replay began).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    stream: str = Field(description="Stream name, e.g. EVENTS.")
    subject: str | None = Field(default=None, description="Subject filter; wildcards allowed.")
    from_seq: int | None = Field(default=None, ge=1, description="First stream sequence.")
    since: datetime | None = Field(default=None, description="Earliest message time, aware.")
    to_seq: int | None = Field(default=None, ge=1, description="Last stream sequence.")
    until: datetime | None = Field(default=None, description="Latest message time, aware.")
    dry_run: bool = Field(default=False, description="Count what would be replayed; apply nothing.")
    progress_subject: str | None = Field(
        default=None, description="Where to publish progress ({done, total}) while it runs."
    )

    @model_validator(mode="after")
    def _one_start_one_end(self) -> ReplayRequest:
        if self.from_seq is not None and self.since is not None:
            raise ValueError("give --from-seq or --since, not both")
        if self.to_seq is not None and self.until is not None:
            raise ValueError("give --to-seq or --until, not both")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} needs a time zone")
        return self


class ReplayReport(BaseModel):
    """What a replay did, or would do (``dry_run``)."""

    model_config = ConfigDict(frozen=True)

    service: str
    stream: str
    subjects: list[str] = Field(
        description="The subjects replayed: the filter met with what the service handles."
    )
    dry_run: bool
    matched: int = Field(description="Messages in range.")
    by_type: dict[str, int] = Field(description="Messages in range by type and version.")
    applied: int = 0
    skipped: int = Field(default=0, description="Already handled: changed nothing.")
    failed: int = Field(default=0, description="Sent to the dead-letter stream.")
    first_seq: int | None = None
    last_seq: int | None = None


class RedriveRequest(BaseModel):
    """Take back dead letters (DLQ stream sequences) that failed in this service."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sequences: list[int] = Field(description="DLQ stream sequences; empty with all=true.")
    all: bool = Field(default=False, description="Every dead letter of this service.")


class RedriveReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    service: str
    applied: int = 0
    skipped: int = Field(default=0, description="Already handled since: removed from the DLQ.")
    failed: int = Field(
        default=0, description="Failed again: back in the DLQ with the count raised."
    )
    not_found: list[int] = Field(default_factory=list, description="Sequences not in the DLQ.")
    not_ours: list[int] = Field(default_factory=list, description="Dead letters of other services.")


def rebuild_subject(service: str) -> str:
    """Request subject on which a service rebuilds its read models from the streams."""
    return f"{service}.cmd.rebuild"


class RebuildRequest(BaseModel):
    """Rebuild the service's read models from the streams; nothing to choose."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class RebuildReport(BaseModel):
    """What a rebuild dropped and what replaying the streams put back."""

    model_config = ConfigDict(frozen=True)

    service: str
    rows_before: dict[str, int] = Field(description="Rows per read-model table before.")
    rows_after: dict[str, int] = Field(description="Rows per read-model table after.")
    replayed: list[ReplayReport] = Field(
        description="One replay per stream the read models come from."
    )


def dead_letters_subject(service: str) -> str:
    """Request subject on which a service lists its dead letters, or shows one."""
    return f"{service}.cmd.dead_letters"


class DeadLettersRequest(BaseModel):
    """This service's dead letters, oldest first, a page at a time; or one, with its
    message (``sequence``). Changes nothing: for those who may not read the DLQ stream
    themselves (the back office), as ``redrive`` is for those who may not change it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sequence: int | None = Field(
        default=None, ge=1, description="One dead letter (its DLQ sequence), with its message."
    )
    after: int = Field(
        default=0, ge=0, description="Start after this DLQ sequence: the previous page's next."
    )
    limit: int = Field(default=100, ge=1, le=500, description="At most this many on the page.")


class DeadLetterView(BaseModel):
    """A dead letter as the DLQ stream holds it: where it came from and why it is there."""

    model_config = ConfigDict(frozen=True)

    sequence: int = Field(description="Its sequence in the DLQ stream: what redrive names.")
    service: str = Field(description="The service it failed in.")
    subject: str = Field(description="The subject it was published on.")
    stream: str = Field(description="The stream it came from.")
    stream_sequence: int = Field(description="Its sequence in that stream.")
    consumer: str = Field(description="The consumer that gave up on it.")
    kind: str = Field(description="malformed, unsupported, invalid, handler or undeliverable.")
    error: str = Field(description="Why it failed, as the service said.")
    deliveries: int = Field(description="How many times it was tried.")
    failed_at: str = Field(description="When it was dead-lettered, UTC (ISO 8601).")
    message: str | None = Field(
        default=None,
        description="The message as stored, personal fields still sealed (when one letter is "
        "asked for); at most 256 KiB of it.",
    )
    message_bytes: int | None = Field(default=None, description="The message's whole size.")


class DeadLettersReport(BaseModel):
    """A page of a service's dead letters; ``next`` is the ``after`` of the following page."""

    model_config = ConfigDict(frozen=True)

    service: str
    letters: list[DeadLetterView]
    next: int | None = Field(default=None, description="Null after the last page.")
