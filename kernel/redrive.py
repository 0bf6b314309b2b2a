"""Redriving dead letters: each goes back through the service it failed in, by the
same idempotent path as live traffic. One that is applied (or was handled
since) leaves the DLQ; one that fails again goes back with its count raised."""

from __future__ import annotations

import logging
from collections.abc import Callable

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.system_v1 import RedriveReport, RedriveRequest
from kernel import deadletter
from kernel.applier import Applier, Incoming
from kernel.deadletter import DeadLetter, Failure, dead_letter, read_dead_letters
from kernel.streams import DLQ_STREAM

log = logging.getLogger(__name__)


async def redrive(
    js: JetStreamContext,
    appliers: Callable[[str], Applier],
    request: RedriveRequest,
    *,
    service: str,
) -> RedriveReport:
    """Apply the requested dead letters of ``service`` again; ``appliers`` maps a stream to its path."""
    letters, not_found = await _letters(js, request)
    ours = [letter for letter in letters if letter.headers.get(deadletter.SERVICE) == service]
    not_ours = [letter.sequence for letter in letters if letter not in ours]
    applied = skipped = failed = 0
    for letter in ours:
        item = Incoming(
            data=letter.data,
            subject=letter.original_subject,
            stream=letter.original_stream,
            sequence=letter.original_sequence,
            deliveries=letter.deliveries + 1,
        )
        applier = appliers(letter.original_stream)
        decoded = await applier.decode(item)
        if isinstance(decoded, Failure):
            outcome_error: str | None = decoded.error
            kind = decoded.kind
        else:
            outcome = await applier.apply([decoded])
            applied, skipped = applied + outcome.applied, skipped + outcome.skipped
            outcome_error = None
            kind = "handler"
            if outcome.failed:
                error = outcome.failed[0][1]
                outcome_error = f"{type(error).__name__}: {error}"
        if outcome_error is not None:
            failed += 1
            await dead_letter(
                js,
                item,
                service=service,
                consumer=letter.consumer,
                failure=Failure(kind, outcome_error),
                attempt=f"redrive-{item.deliveries}",  # a copy of its own, as the letter goes
            )
        await js.delete_msg(DLQ_STREAM, letter.sequence)
    return RedriveReport(
        service=service,
        applied=applied,
        skipped=skipped,
        failed=failed,
        not_found=not_found,
        not_ours=not_ours,
    )


async def _letters(
    js: JetStreamContext, request: RedriveRequest
) -> tuple[list[DeadLetter], list[int]]:
    if request.all:
        return await read_dead_letters(js, limit=100_000), []
    letters, missing = [], []
    for sequence in request.sequences:
        try:
            raw = await js.get_msg(DLQ_STREAM, seq=sequence)
        except NotFoundError:
            missing.append(sequence)
            continue
        letters.append(
            DeadLetter(sequence, raw.subject or "", dict(raw.headers or {}), raw.data or b"")
        )
    return letters, missing
