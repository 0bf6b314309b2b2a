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

from contracts.people_v1 import HOLDERS

log = logging.getLogger(__name__)

DLQ_STREAM = "DLQ"
PEOPLE_STREAM = "PEOPLE"
OPS_STREAM = "OPS"
DLQ_PREFIX = "dlq"


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    description: str
    # Nothing may be deleted from it, it may not be purged, and nobody updates it: a
    # declaration creates it if it is missing and otherwise leaves it as it is.
    append_only: bool = False


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
            "subscriptions.person.*",
        ),
        "Facts of the subscriptions service: memberships, invoices, payments, runs.",
    ),
    StreamSpec(
        "EVENTS",
        (
            "events.event.*",
            "events.booking.*",
            "events.reminder.*",
            "events.attendance.*",
            "events.person.*",
        ),
        "Facts of the events service: events, bookings, reminders, attendance.",
    ),
    StreamSpec(
        "NOTIFICATIONS",
        ("notifications.delivery.*", "notifications.broadcast.*", "notifications.person.*"),
        "Facts of the notifications service: deliveries and broadcasts.",
    ),
    StreamSpec(
        PEOPLE_STREAM,
        ("people.erasure.*",),
        "Requests about people that every service holding personal data acts on: erasure.",
    ),
    StreamSpec(
        DLQ_STREAM,
        (f"{DLQ_PREFIX}.>",),
        "Dead letters: each holds the original message, where it came from and why it failed.",
    ),
    StreamSpec(
        OPS_STREAM,
        ("ops.action.*",),
        "The audit: each action taken through Vestry (what, on what, by whom, the result), "
        "recorded by whoever carried it out. Append-only.",
        append_only=True,
    ),
)


def stream_for_subject(subject: str) -> StreamSpec:
    owner, entity = subject.split(".")[:2]
    for spec in STREAMS:
        if f"{owner}.{entity}.*" in spec.subjects:
            return spec
    raise LookupError(f"no stream holds {subject}")


def streams_of(service: str) -> list[StreamSpec]:
    """The streams a service declares: its own facts' stream, if it has one, the DLQ,
    OPS (every service records the actions it carries out there, through its outbox,
    whose relay would stall on a subject no stream holds), and PEOPLE, which every
    service that holds personal data reads."""
    shared = (DLQ_STREAM, OPS_STREAM)
    if service in HOLDERS:
        shared += (PEOPLE_STREAM,)
    return [spec for spec in STREAMS if spec.name in (service.upper(), *shared)]


def stream_config(
    spec: StreamSpec, *, duplicate_window_s: float, replicas: int = 1
) -> StreamConfig:
    """The configuration Vestry declares for ``spec``."""
    return StreamConfig(
        name=spec.name,
        description=spec.description,
        subjects=list(spec.subjects),
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_age=0,  # keep every fact: read models are rebuilt from the start
        duplicate_window=duplicate_window_s,
        num_replicas=replicas,
        deny_delete=True if spec.append_only else None,
        deny_purge=True if spec.append_only else None,
    )


# What a declaration sets; anything else on a stream is left as the server has it.
DECLARED = (
    "description",
    "subjects",
    "storage",
    "retention",
    "discard",
    "max_age",
    "duplicate_window",
    "num_replicas",
)


def differences(existing: StreamConfig, wanted: StreamConfig) -> list[str]:
    """The declared settings in which an existing stream differs from ``wanted``."""
    have, want = existing.as_dict(), wanted.as_dict()
    changed = []
    for key in DECLARED:
        if key == "subjects":
            if sorted(have.get(key) or []) != sorted(want.get(key) or []):
                changed.append(key)
        elif have.get(key) != want.get(key):
            changed.append(key)
    return changed


async def ensure_streams(
    js: JetStreamContext,
    *,
    duplicate_window_s: float,
    replicas: int = 1,
    streams: Iterable[StreamSpec] = STREAMS,
    update: bool = True,
) -> None:
    """Create each stream, or bring an existing one's subjects, window and replicas up to
    date; an append-only stream (OPS), or any when ``update`` is False (a user who may
    not change streams), is only created, never updated."""
    for spec in streams:
        config = stream_config(spec, duplicate_window_s=duplicate_window_s, replicas=replicas)
        await _declare_stream(js, config, update=update and not spec.append_only)


async def _declare_stream(
    js: JetStreamContext, config: StreamConfig, attempts: int = 6, *, update: bool = True
) -> None:
    """Create a missing stream, or update an existing one where it differs, riding out a
    cluster that is still settling.

    A freshly started cluster can answer "no suitable peers for placement"
    or not answer at all for a few seconds while it elects leaders.

    A stream that already matches is left alone: in production a service's NATS
    user may create its stream but never change it (deploy/nats/accounts.conf), so
    an update it is refused goes unanswered; that is logged, the stream is kept as
    it is, and the service starts (an admin declares changed streams: deploy/README.md).
    """
    for attempt in range(1, attempts + 1):
        try:
            try:
                info = await js.stream_info(config.name or "")
            except NotFoundError:
                await js.add_stream(config)
                log.info("created stream %s", config.name)
                return
            changed = differences(info.config, config)
            if changed and update:
                await _update_stream(js, config, changed)
            elif changed:
                log.info(
                    "stream %s differs from this version's declaration (%s); nobody updates "
                    "it, so it is kept as it is",
                    config.name,
                    ", ".join(changed),
                )
            return
        except (nats.errors.TimeoutError, ServiceUnavailableError, ServerError) as error:
            if attempt == attempts:
                raise
            log.warning(
                "declaring stream %s: %s; trying again", config.name, error or type(error).__name__
            )
            await asyncio.sleep(min(0.5 * 2**attempt, 5.0))


async def _update_stream(js: JetStreamContext, config: StreamConfig, changed: list[str]) -> None:
    try:
        await js.update_stream(config)
    except nats.errors.TimeoutError:
        log.warning(
            "stream %s differs from this version's declaration (%s) and was not updated: "
            "no answer, or this NATS user may not update streams (in production an admin "
            'declares them: deploy/README.md, "Streams"); keeping it as it is',
            config.name,
            ", ".join(changed),
        )
        return
    log.info("updated stream %s: %s", config.name, ", ".join(changed))


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
