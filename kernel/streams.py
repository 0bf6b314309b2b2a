"""The JetStream streams and durable consumers, declared idempotently at start-up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError, ServerError, ServiceUnavailableError

log = logging.getLogger(__name__)

DLQ_STREAM = "DLQ"
DLQ_PREFIX = "dlq"


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    description: str


# Entity wildcards, never `<owner>.>`: a stream that captured `<owner>.cmd.*`
# would answer every command request with a PubAck.
STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec(
        "SUBSCRIPTIONS",
        (
            "subscriptions.membership.*",
            "subscriptions.invoice.*",
            "subscriptions.credit_note.*",
            "subscriptions.payment.*",
            "subscriptions.invoice_run.*",
        ),
        "Facts of the subscriptions service: memberships, invoices, payments, runs.",
    ),
    StreamSpec(
        "EVENTS",
        ("events.event.*", "events.booking.*", "events.reminder.*", "events.attendance.*"),
        "Facts of the events service: events, bookings, reminders, attendance.",
    ),
    StreamSpec(
        "NOTIFICATIONS",
        ("notifications.delivery.*", "notifications.broadcast.*"),
        "Facts of the notifications service: deliveries and broadcasts.",
    ),
    StreamSpec(
        DLQ_STREAM,
        (f"{DLQ_PREFIX}.>",),
        "Dead letters: each holds the original message, where it came from and why it failed.",
    ),
)


def stream_for_subject(subject: str) -> StreamSpec:
    owner, entity = subject.split(".")[:2]
    for spec in STREAMS:
        if f"{owner}.{entity}.*" in spec.subjects:
            return spec
    raise LookupError(f"no stream holds {subject}")


def streams_of(service: str) -> list[StreamSpec]:
    """The streams a service declares: its own facts' stream, if it has one, and the DLQ."""
    return [spec for spec in STREAMS if spec.name in (service.upper(), DLQ_STREAM)]


async def ensure_streams(
    js: JetStreamContext,
    *,
    duplicate_window_s: float,
    replicas: int = 1,
    streams: Iterable[StreamSpec] = STREAMS,
) -> None:
    """Create each stream, or bring an existing one's subjects, window and replicas up to date."""
    for spec in streams:
        config = StreamConfig(
            name=spec.name,
            description=spec.description,
            subjects=list(spec.subjects),
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            max_age=0,  # keep every fact: read models are rebuilt from the start
            duplicate_window=duplicate_window_s,
            num_replicas=replicas,
        )
        await _declare_stream(js, config)


async def _declare_stream(js: JetStreamContext, config: StreamConfig, attempts: int = 6) -> None:
    """Create or update one stream, riding out a cluster that is still settling.

    A freshly started cluster can answer "no suitable peers for placement"
    or not answer at all for a few seconds while it elects leaders.
    """
    for attempt in range(1, attempts + 1):
        try:
            try:
                await js.stream_info(config.name or "")
            except NotFoundError:
                await js.add_stream(config)
                log.info("created stream %s", config.name)
            else:
                await js.update_stream(config)
            return
        except (nats.errors.TimeoutError, ServiceUnavailableError, ServerError) as error:
            if attempt == attempts:
                raise
            log.warning(
                "declaring stream %s: %s; trying again", config.name, error or type(error).__name__
            )
            await asyncio.sleep(min(0.5 * 2**attempt, 5.0))


@dataclass(frozen=True)
class ConsumerSpec:
    stream: str
    durable: str
    subjects: tuple[str, ...]


async def ensure_consumer(
    js: JetStreamContext, spec: ConsumerSpec, *, ack_wait_s: float, max_ack_pending: int = 1000
) -> None:
    """Create the durable pull consumer, or update its filter and timings in place.

    ``max_deliver`` is left unlimited on purpose: the consumer counts
    deliveries itself and dead-letters, so JetStream never drops a message
    quietly when a limit runs out.
    """
    config = ConsumerConfig(
        durable_name=spec.durable,
        description=f"{spec.durable} reads {spec.stream}",
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait_s,
        max_deliver=-1,
        max_ack_pending=max_ack_pending,
        filter_subjects=list(spec.subjects),
    )
    await js.add_consumer(spec.stream, config)
