"""`vestry audit`: who did what, read from the OPS stream through the contract.

Read-only: it fetches stored records by sequence, newest first (``STREAM.MSG.GET``,
which the observer and the operator may both call), and creates no consumer.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from vestry.cli_ops import LONDON, parse_time
from vestry.connection import connected
from vestry.terminal import console, emit, options_of, run

if TYPE_CHECKING:
    from nats.js import JetStreamContext

LONDON_FORMAT = "%Y-%m-%d %H:%M:%S"


def audit(
    ctx: typer.Context,
    since: Annotated[
        str | None, typer.Option(help="From this time (Europe/London unless a zone is given).")
    ] = None,
    action: Annotated[
        str | None, typer.Option(help="Only this action, e.g. record_payment, replay.")
    ] = None,
    by: Annotated[
        str | None,
        typer.Option(help="Only actions by this staff member (part of the name) or NATS user."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, the latest.")] = 50,
) -> None:
    """Who did what: the latest actions recorded in OPS, oldest first."""
    options = options_of(ctx)
    start = parse_time(since, "--since")

    async def read() -> list[dict[str, Any]]:
        async with connected(options.nats) as nc:
            return await records(nc.jetstream(), since=start, action=action, by=by, limit=limit)

    rows = run(options, read())

    def render() -> None:
        table = Table(title=f"Audit ({len(rows)})")
        for column in ("#", "when", "action", "by", "via", "service", "target", "result"):
            table.add_column(column)
        for row in rows:
            table.add_row(
                str(row["seq"]),
                row["at"],
                row["action"] + (" (dry run)" if row.get("dry_run") else ""),
                row["by"],
                row["via"],
                row["service"],
                row["target"] or "",
                _brief(row["result"]),
            )
        console.print(table)

    emit(options, rows, render)


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
    from nats.js.errors import NotFoundError

    from kernel.streams import OPS_STREAM

    try:
        state = (await js.stream_info(OPS_STREAM)).state
    except NotFoundError:
        return []
    found: list[dict[str, Any]] = []
    for sequence in range(state.last_seq, max(state.first_seq, 1) - 1, -1):
        if len(found) == limit:
            break
        try:
            stored = await js.get_msg(OPS_STREAM, seq=sequence)
        except NotFoundError:  # a record OPS no longer holds (one from before append-only)
            continue
        if since is not None and stored.time is not None and stored.time < since:
            break  # stored in time order: everything before is older still
        row = _row(sequence, stored.data or b"")
        if _matches(row, action, by):
            found.append(row)
    return found[::-1]


def _row(sequence: int, data: bytes) -> dict[str, Any]:
    from pydantic import ValidationError

    from contracts import Envelope
    from contracts.audit_v1 import ActionRecorded

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


def _brief(result: dict[str, Any]) -> str:
    text = ", ".join(
        f"{key} {value}" for key, value in result.items() if not isinstance(value, (dict, list))
    )
    return text[:80]
