"""The audit stream read back: who did what, newest first, from the OPS stream.

Read-only: stored records are fetched by sequence (``STREAM.MSG.GET``, which the
observer, the operator and the site may call) and no consumer is created. Both
``vestry audit`` and the back office's audit page read it here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from contracts import Envelope
from contracts.audit_v1 import ActionRecorded
from kernel.streams import OPS_STREAM

LONDON = ZoneInfo("Europe/London")
LONDON_FORMAT = "%Y-%m-%d %H:%M:%S"
# Records asked for at once, newest first.
_WINDOW = 50


async def records(
    js: JetStreamContext,
    *,
    since: datetime | None = None,
    action: str | None = None,
    by: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """The latest ``limit`` records that match, oldest first. Records written before the
    contract (bare JSON from the CLI) are shown as they are, marked ``legacy``."""
    found: list[dict[str, Any]] = []
    async for row in _newest_first(js, None, since):
        if len(found) == limit:
            break
        if _matches(row, action, by):
            found.append(row)
    return found[::-1]


async def page_of_records(
    js: JetStreamContext,
    *,
    before: int | None = None,
    action: str | None = None,
    by: str | None = None,
    limit: int = 50,
    examine: int = 2_000,
) -> tuple[list[dict[str, Any]], int | None]:
    """Up to ``limit`` records that match, newest first, stored before sequence
    ``before`` (all when None), looking at no more than ``examine`` records; and the
    sequence the next page goes on before, None when the stream's first has been seen."""
    found: list[dict[str, Any]] = []
    looked, oldest = 0, None
    async for row in _newest_first(js, before, None):
        if len(found) == limit or looked == examine:
            return found, oldest
        looked, oldest = looked + 1, row["seq"]
        if _matches(row, action, by):
            found.append(row)
    return found, None


async def _newest_first(
    js: JetStreamContext, before: int | None, since: datetime | None
) -> AsyncIterator[dict[str, Any]]:
    try:
        state = (await js.stream_info(OPS_STREAM)).state
    except NotFoundError:
        return
    last = state.last_seq if before is None else min(state.last_seq, before - 1)
    sequences = range(last, max(state.first_seq, 1) - 1, -1)
    # A window of records asked for at once, the requests in flight together.
    for start in range(0, len(sequences), _WINDOW):
        window = sequences[start : start + _WINDOW]
        stored = await asyncio.gather(*(_stored(js, sequence) for sequence in window))
        for sequence, message in zip(window, stored, strict=True):
            if message is None:  # a record OPS no longer holds (one from before append-only)
                continue
            if since is not None and message.time is not None and message.time < since:
                return  # stored in time order: everything before is older still
            yield _row(sequence, message.data or b"")


async def _stored(js: JetStreamContext, sequence: int) -> RawStreamMsg | None:
    try:
        return await js.get_msg(OPS_STREAM, seq=sequence)
    except NotFoundError:
        return None


def _row(sequence: int, data: bytes) -> dict[str, Any]:
    try:
        envelope = Envelope.from_bytes(data)
        record = ActionRecorded.model_validate(envelope.data)
    except ValidationError:
        return _legacy(sequence, data)
    return {
        "seq": sequence,
        "id": envelope.id,
        "at": _london(envelope.occurred_at),
        "action": record.action,
        "by": record.by.name,
        "by_kind": record.by.kind,
        "staff_id": record.by.staff_id,
        "address": record.by.address,
        "via": record.by.nats_user,
        "service": record.service,
        "target": record.target,
        "dry_run": record.dry_run,
        "filters": record.filters,
        "result": record.result,
        "request_id": record.request_id,
    }


def _legacy(sequence: int, data: bytes) -> dict[str, Any]:
    """A record from before ``ActionRecorded``: the CLI's own JSON, "by" its OS user."""
    try:
        entry = json.loads(data)
        when = datetime.fromisoformat(entry["at"])
    except (ValueError, KeyError, TypeError):
        entry, when = {}, None
    return {
        "seq": sequence,
        "id": entry.get("id"),
        "at": _london(when) if when else "",
        "action": str(entry.get("action", "(unreadable)")),
        "by": str(entry.get("by", "")),
        "by_kind": "legacy",
        "staff_id": None,
        "address": None,
        "via": "legacy (OS user)",
        "service": "cli",
        "target": None,
        "dry_run": False,
        "filters": entry.get("filters", {}),
        "result": entry.get("result", {}),
        "request_id": None,
    }


def _matches(row: dict[str, Any], action: str | None, by: str | None) -> bool:
    if action is not None and row["action"] != action:
        return False
    if by is not None:
        wanted = by.casefold()
        named = wanted in row["by"].casefold()
        return named or wanted in {str(row["staff_id"]).casefold(), row["via"].casefold()}
    return True


def _london(value: datetime) -> str:
    return value.astimezone(LONDON).strftime(LONDON_FORMAT)


def brief(result: dict[str, Any]) -> str:
    """A record's result in a line: its plain values, at most 80 characters."""
    text = ", ".join(
        f"{key} {value}" for key, value in result.items() if not isinstance(value, (dict, list))
    )
    return text[:80]
