"""Replaying part of a stream into a service, through the same idempotent path as
live traffic: what was handled before is skipped, what fails is dead-lettered.

A replay reads through its own short-lived consumer, never the service's
durable one, so live traffic goes on beside it.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import TypeAdapter, ValidationError

from contracts.system_v1 import ReplayReport, ReplayRequest
from kernel.applier import Applier, Decoded, Incoming
from kernel.deadletter import Failure, dead_letter

log = logging.getLogger(__name__)

Progress = Callable[[int, int], Awaitable[None]]


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, ``>`` the rest."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > index
        if index >= len(tokens) or (token != "*" and token != tokens[index]):
            return False
    return len(wanted) == len(tokens)


def replay_subjects(handled: tuple[str, ...], pattern: str | None) -> list[str]:
    return [subject for subject in handled if pattern is None or subject_matches(pattern, subject)]


async def replay(
    js: JetStreamContext,
    applier: Applier,
    request: ReplayRequest,
    *,
    service: str,
    progress: Progress | None = None,
    batch: int = 500,
) -> ReplayReport:
    """Replay ``request``'s range into ``applier``; a dry run only counts by type."""
    subjects = replay_subjects(applier.subjects, request.subject)
    report = dict(
        service=service, stream=request.stream, subjects=subjects, dry_run=request.dry_run
    )
    if not subjects:
        return ReplayReport(**report, matched=0, by_type={})
    info = await js.stream_info(request.stream)
    last = min(request.to_seq or info.state.last_seq, info.state.last_seq)
    name = f"replay-{service}-{uuid.uuid4().hex[:10]}"
    await js.add_consumer(request.stream, _consumer_config(name, subjects, request))
    counts: Counter[str] = Counter()
    applied = skipped = failed = 0
    first_seq = last_seq = None
    until = request.until.astimezone(UTC) if request.until is not None else None
    try:
        total = (await js.consumer_info(request.stream, name)).num_pending or 0
        subscription = await js.pull_subscribe_bind(name=name, stream=request.stream)
        done = 0
        finished = total == 0
        while not finished:
            try:
                msgs = await subscription.fetch(batch, timeout=2)
            except nats.errors.TimeoutError:
                break
            in_range, finished = _in_range(msgs, last, until)
            if in_range:
                first_seq = first_seq or in_range[0].metadata.sequence.stream
                last_seq = in_range[-1].metadata.sequence.stream
            labels = [_label_of(msg.data) for msg in in_range]
            counts.update(label for label, _ in labels)
            if not request.dry_run:
                outcome = await _apply(
                    js,
                    applier,
                    in_range,
                    [message_id for _, message_id in labels],
                    service=service,
                    consumer=name,
                )
                applied, skipped, failed = (
                    applied + outcome[0],
                    skipped + outcome[1],
                    failed + outcome[2],
                )
            done += len(in_range)
            if progress is not None:
                await progress(done, total)
    finally:
        try:
            await js.delete_consumer(request.stream, name)
        except Exception as error:  # it expires by itself (inactive threshold)
            log.debug("replay consumer %s not deleted: %s", name, error)
    return ReplayReport(
        **report,
        matched=sum(counts.values()),
        by_type=dict(sorted(counts.items())),
        applied=applied,
        skipped=skipped,
        failed=failed,
        first_seq=first_seq,
        last_seq=last_seq,
    )


def _consumer_config(name: str, subjects: list[str], request: ReplayRequest) -> ConsumerConfig:
    config = ConsumerConfig(
        name=name,
        ack_policy=AckPolicy.NONE,
        filter_subjects=subjects,
        inactive_threshold=60.0,
        mem_storage=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    if request.from_seq is not None:
        config.deliver_policy, config.opt_start_seq = (
            DeliverPolicy.BY_START_SEQUENCE,
            request.from_seq,
        )
    elif request.since is not None:
        config.deliver_policy = DeliverPolicy.BY_START_TIME
        config.opt_start_time = request.since.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return config


@dataclass(frozen=True)
class _Heading:
    """What a replay reads of a message before anything else: enough to count it by
    type and to skip it if it was handled (other fields are not looked at)."""

    type: str
    version: int
    id: Any = None


_HEADING = TypeAdapter(_Heading)


def _label_of(data: bytes) -> tuple[str, str | None]:
    """A message's type and version as the report counts them, and its id if it has one."""
    try:
        heading = _HEADING.validate_json(data)
    except ValidationError:
        return "(not an envelope)", None
    message_id = heading.id if isinstance(heading.id, str) else None
    return f"{heading.type}.v{heading.version}", message_id


def _in_range(msgs: list[Msg], last: int, until: datetime | None) -> tuple[list[Msg], bool]:
    """The fetched messages up to sequence ``last`` and stored by ``until``, and whether
    the replay is finished. Sequences only rise in a batch: when the last is in range
    and no time bounds the replay, so is every other, and only it is looked at."""
    if not msgs:
        return [], False
    meta = msgs[-1].metadata
    if until is None and meta.sequence.stream <= last:
        return msgs, meta.num_pending == 0
    in_range: list[Msg] = []
    for msg in msgs:
        meta = msg.metadata
        if meta.sequence.stream > last or (until is not None and meta.timestamp > until):
            return in_range, True
        in_range.append(msg)
    return in_range, meta.num_pending == 0


async def _apply(
    js: JetStreamContext,
    applier: Applier,
    msgs: list[Msg],
    message_ids: list[str | None],
    *,
    service: str,
    consumer: str,
) -> tuple[int, int, int]:
    """Apply a fetched batch; returns how many were applied, skipped and failed.

    What the inbox already holds is skipped first, in one query, before anything
    is opened or validated: replaying facts already handled costs a read per batch.
    """
    handled = await applier.handled(filter(None, message_ids))
    items = [
        Incoming(
            data=msg.data,
            subject=msg.subject,
            stream=msg.metadata.stream,
            sequence=msg.metadata.sequence.stream,
        )
        for msg, message_id in zip(msgs, message_ids, strict=True)
        if message_id is None or message_id not in handled
    ]
    skipped = len(msgs) - len(items)
    if not items:
        return 0, skipped, 0
    ready: list[Decoded] = []
    failed = 0
    await applier.prepare(items)
    for item in items:
        decoded = await applier.decode(item)
        if isinstance(decoded, Failure):
            await dead_letter(js, item, service=service, consumer=consumer, failure=decoded)
            failed += 1
        else:
            ready.append(decoded)
    outcome = await applier.apply(ready)
    for item, error in outcome.failed:
        failure = Failure("handler", f"{type(error).__name__}: {error}")
        await dead_letter(js, item, service=service, consumer=consumer, failure=failure)
    return outcome.applied, skipped + outcome.skipped, failed + len(outcome.failed)
