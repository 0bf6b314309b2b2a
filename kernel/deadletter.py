"""Dead letters: a message that could not be handled, kept with where it came from and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from kernel.streams import DLQ_PREFIX, DLQ_STREAM

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
    js: JetStreamContext, msg: Msg, *, service: str, consumer: str, failure: Failure
) -> None:
    """Store ``msg`` in the DLQ stream with its origin and the error; raises if not stored.

    The copy's own id is fixed by the original's stream sequence and delivery
    count, so publishing it again after a crash does not make a second copy.
    """
    meta = msg.metadata
    headers = {
        SUBJECT: msg.subject,
        STREAM: meta.stream,
        SEQUENCE: str(meta.sequence.stream),
        SERVICE: service,
        CONSUMER: consumer,
        KIND: failure.kind,
        ERROR: _header_safe(failure.error) or failure.kind,
        DELIVERIES: str(meta.num_delivered),
        FAILED_AT: datetime.now(UTC).isoformat(),
        "Nats-Msg-Id": f"dlq:{consumer}:{meta.stream}:{meta.sequence.stream}:{meta.num_delivered}",
    }
    await js.publish(
        dead_letter_subject(service, msg.subject),
        msg.data,
        stream=DLQ_STREAM,
        headers=headers,
        timeout=5,
    )
