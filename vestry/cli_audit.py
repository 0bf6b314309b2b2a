"""`vestry audit`: who did what, read from the OPS stream through the contract.

Read-only: it fetches stored records by sequence, newest first (``STREAM.MSG.GET``,
which the observer and the operator may both call), and creates no consumer.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vestry.cli_ops import parse_time
from vestry.connection import connected
from vestry.terminal import console, emit, new_table, options_of, run


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
        from kernel.audit_log import records

        async with connected(options.nats) as nc:
            return await records(nc.jetstream(), since=start, action=action, by=by, limit=limit)

    rows = run(options, read())

    def render() -> None:
        from kernel.audit_log import brief

        table = new_table(title=f"Audit ({len(rows)})")
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
                brief(row["result"]),
            )
        console.print(table)

    emit(options, rows, render)
