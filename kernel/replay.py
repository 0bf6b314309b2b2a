"""Replaying part of a stream into a service, through the same idempotent path as
live traffic: what was handled before is skipped, what fails is dead-lettered.

A replay reads through its own short-lived consumer, never the service's
durable one, so live traffic goes on beside it.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

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
            in_range: list[Msg] = []
            for msg in msgs:
                meta = msg.metadata
                late = request.until is not None and meta.timestamp > request.until.astimezone(UTC)
                if meta.sequence.stream > last or late:
                    finished = True
                    break
                in_range.append(msg)
                finished = meta.num_pending == 0
            first_seq = first_seq or (in_range[0].metadata.sequence.stream if in_range else None)
            if in_range:
                last_seq = in_range[-1].metadata.sequence.stream
            for msg in in_range:
                counts[_type_of(msg)] += 1
            if not request.dry_run:
                outcome = await _apply(js, applier, in_range, service=service, consumer=name)
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


def _type_of(msg: Msg) -> str:
    try:
        body = json.loads(msg.data)
        return f"{body['type']}.v{body['version']}"
    except (ValueError, KeyError, TypeError):
        return "(not an envelope)"


async def _apply(
    js: JetStreamContext, applier: Applier, msgs: list[Msg], *, service: str, consumer: str
) -> tuple[int, int, int]:
    ready: list[Decoded] = []
    failed = 0
    items = [
        Incoming(
            data=msg.data,
            subject=msg.subject,
            stream=msg.metadata.stream,
            sequence=msg.metadata.sequence.stream,
        )
        for msg in msgs
    ]
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
    return outcome.applied, outcome.skipped, failed + len(outcome.failed)
