"""The demo's invoicing step: the current financial year's run for the reference members.

``vestry demo`` enrols the reference partnership first (vestry/demo.py); this
previews the year's run by tier, runs it while a progress bar follows it, and
answers a summary. Run again, it issues nothing and says all are already billed.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from nats.aio.client import Client
from rich.progress import Progress

from contracts.subscriptions_v1 import InvoiceRunStatus, ListInvoices, RunInvoicing
from kernel.commands import CommandFailed, request


def current_financial_year(now: datetime | None = None) -> int:
    """The UK financial year today falls in (Europe/London): 2026 is Apr 2026 – Mar 2027."""
    today = (now or datetime.now(UTC)).astimezone(ZoneInfo("Europe/London")).date()
    return today.year if today.month >= 4 else today.year - 1


async def run_invoicing_demo(
    nc: Client, progress: Progress | None = None, *, year: int | None = None, timeout: float = 120
) -> dict[str, Any]:
    """Preview and run the year's invoicing; returns what it issued and what it found billed."""
    year = year or current_financial_year()
    preview = await request(nc, RunInvoicing(year=year, dry_run=True), timeout=60)
    try:
        record = await request(nc, RunInvoicing(year=year))
    except CommandFailed as refused:
        if refused.error.code != "busy":
            raise
        # The service's own automation is running this year already: follow that run.
        record = (await request(nc, InvoiceRunStatus(year=year)))["runs"][0]
    task = (
        progress.add_task(f"Invoicing {year}", total=max(record["to_bill"], 1))
        if progress is not None
        else None
    )
    deadline = asyncio.get_running_loop().time() + timeout
    while record["status"] in ("queued", "running"):
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
        record = await request(nc, InvoiceRunStatus(run_id=record["run_id"]))
        if progress is not None and task is not None:
            progress.update(task, completed=record["issued"] + record["skipped"])
    if progress is not None and task is not None:
        progress.update(task, completed=max(record["to_bill"], 1))
    invoices = (await request(nc, ListInvoices(year=year, limit=100_000)))["invoices"]
    recurring = [i for i in invoices if i["kind"] == "invoice" and i["purpose"] == "recurring"]
    return {
        "year": year,
        "run_id": record["run_id"],
        "status": record["status"],
        "preview_by_tier": {t["tier"]: t["members"] for t in preview["tiers"]},
        "issued": record["issued"],
        "already_billed": record["already_billed"],
        "net_pence": record["net"],
        "gross_pence": record["gross"],
        "invoices_for_year": len(recurring),
        "total_billed_pence": sum(i["gross"] for i in recurring),
        "numbers": f"{recurring[0]['number']}–{recurring[-1]['number']}" if recurring else "",
    }
