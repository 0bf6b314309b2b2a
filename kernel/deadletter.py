"""Dead letters: a message that could not be handled, kept with where it came from and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.system_v1 import DeadLettersReport, DeadLettersRequest, DeadLetterView
from kernel.streams import DLQ_PREFIX, DLQ_STREAM

if TYPE_CHECKING:
    from kernel.applier import Incoming

SUBJECT = "Vestry-Original-Subject"
STREAM = "Vestry-Original-Stream"
SEQUENCE = "Vestry-Original-Sequence"
SERVICE = "Vestry-Service"
CONSUMER = "Vestry-Consumer"
KIND = "Vestry-Error-Kind"
ERROR = "Vestry-Error"
DELIVERIES = "Vestry-Deliveries"
FAILED_AT = "Vestry-Failed-At"

_MAX_ERROR = 4000


@dataclass(frozen=True)
class Failure:
    """Why a message is being dead-lettered."""

    kind: str  # malformed | unsupported | invalid | handler | undeliverable
    error: str


def dead_letter_subject(service: str, original_subject: str) -> str:
    return f"{DLQ_PREFIX}.{service}.{original_subject}"


def _header_safe(text: str) -> str:
    flat = " | ".join(line.strip() for line in text.splitlines() if line.strip())
    return flat[:_MAX_ERROR]


async def dead_letter(
    js: JetStreamContext,
    item: Incoming,
    *,
    service: str,
    consumer: str,
    failure: Failure,
    attempt: str = "",
) -> None:
    """Store ``msg`` in the DLQ stream with its origin and the error; raises if not stored.

    The copy's own id is fixed by the consumer and the original's stream sequence
    (and ``attempt``, for a redrive that failed again), so storing it again makes no
    second copy: after a crash before the message was settled, or when the message
    came again while its last delivery was still being dead-lettered (its ack
    deadline passed while a slow batch was applied, and JetStream redelivered it).
    """
    headers = {
        SUBJECT: item.subject,
        STREAM: item.stream,
        SEQUENCE: str(item.sequence),
        SERVICE: service,
        CONSUMER: consumer,
        KIND: failure.kind,
        ERROR: _header_safe(failure.error) or failure.kind,
        DELIVERIES: str(item.deliveries),
        FAILED_AT: datetime.now(UTC).isoformat(),
        "Nats-Msg-Id": ":".join(
            part for part in ("dlq", consumer, item.stream, str(item.sequence), attempt) if part
        ),
    }
    await js.publish(
        dead_letter_subject(service, item.subject),
        item.data,
        stream=DLQ_STREAM,
        headers=headers,
        timeout=5,
    )


@dataclass(frozen=True)
class DeadLetter:
    """A message in the DLQ stream, with where it came from and why it is there."""

    sequence: int
    subject: str
    headers: dict[str, str]
    data: bytes

    @property
    def kind(self) -> str:
        return self.headers.get(KIND, "")

    @property
    def error(self) -> str:
        return self.headers.get(ERROR, "")

    @property
    def original_subject(self) -> str:
        return self.headers.get(SUBJECT, "")

    @property
    def original_stream(self) -> str:
        return self.headers.get(STREAM, "")

    @property
    def original_sequence(self) -> int:
        return int(self.headers.get(SEQUENCE, "0"))

    @property
    def consumer(self) -> str:
        return self.headers.get(CONSUMER, "")

    @property
    def deliveries(self) -> int:
        return int(self.headers.get(DELIVERIES, "0"))


async def read_dead_letters(js: JetStreamContext, limit: int = 1000) -> list[DeadLetter]:
    """The dead letters still in the DLQ stream, oldest first (at most ``limit``)."""
    info = await js.stream_info(DLQ_STREAM)
    letters: list[DeadLetter] = []
    sequence = info.state.first_seq
    while sequence and sequence <= info.state.last_seq and len(letters) < limit:
        try:
            raw = await js.get_msg(DLQ_STREAM, seq=sequence)
        except NotFoundError:  # a gap left by a purge or delete
            sequence += 1
            continue
        letters.append(
            DeadLetter(
                raw.seq or sequence, raw.subject or "", dict(raw.headers or {}), raw.data or b""
            )
        )
        sequence += 1
    return letters


# Shown to a person: a letter's message is cut at this size, so an answer always fits.
SHOWN_BYTES = 256 * 1024


def view(letter: DeadLetter, *, with_message: bool = False) -> DeadLetterView:
    """A dead letter as the operator's request answers it."""
    return DeadLetterView(
        sequence=letter.sequence,
        service=letter.headers.get(SERVICE, ""),
        subject=letter.original_subject,
        stream=letter.original_stream,
        stream_sequence=letter.original_sequence,
        consumer=letter.consumer,
        kind=letter.kind,
        error=letter.error,
        deliveries=letter.deliveries,
        failed_at=letter.headers.get(FAILED_AT, ""),
        message=letter.data[:SHOWN_BYTES].decode(errors="replace") if with_message else None,
        message_bytes=len(letter.data) if with_message else None,
    )


async def dead_letters_of(
    js: JetStreamContext, service: str, request: DeadLettersRequest
) -> DeadLettersReport:
    """The dead letters that failed in ``service``: one page, or the one asked for."""
    if request.sequence is not None:
        try:
            raw = await js.get_msg(DLQ_STREAM, seq=request.sequence)
        except NotFoundError:
            return DeadLettersReport(service=service, letters=[])
        letter = DeadLetter(
            raw.seq or request.sequence, raw.subject or "", dict(raw.headers or {}), raw.data or b""
        )
        ours = letter.headers.get(SERVICE) == service
        return DeadLettersReport(
            service=service, letters=[view(letter, with_message=True)] if ours else []
        )
    letters: list[DeadLetterView] = []
    sequence = request.after + 1
    while len(letters) <= request.limit:  # one more than the page: is there another?
        try:  # the next of this service's letters, skipping everyone else's
            raw = await js.get_msg(
                DLQ_STREAM, seq=sequence, subject=f"{DLQ_PREFIX}.{service}.>", next=True
            )
        except NotFoundError:
            break
        found = raw.seq or sequence
        letter = DeadLetter(found, raw.subject or "", dict(raw.headers or {}), b"")
        if letter.headers.get(SERVICE) == service:
            letters.append(view(letter))
        sequence = found + 1
    page = letters[: request.limit]
    return DeadLettersReport(
        service=service,
        letters=page,
        next=page[-1].sequence if len(letters) > request.limit else None,
    )
