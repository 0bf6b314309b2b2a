"""The subscriptions service killed with SIGKILL in the middle of an invoicing run:
running again ends with exactly one numbered invoice and one fact per member."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from nats.aio.client import Client

from contracts.subscriptions_v1 import InvoiceRunStatus, RunInvoicing
from contracts.system_v1 import health_subject
from kernel.commands import CommandFailed, request
from kernel.settings import Settings
from tests.conftest import eventually
from tests.subscriptions_helpers import enrol_reference, wait_for_run


def start_subscriptions(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "VESTRY_NATS_URL": settings.nats_url,
        "VESTRY_DATA_DIR": str(settings.data_dir),
        "VESTRY_AUTOMATION": "false",
        "VESTRY_INVOICE_RUN_CHUNK": "3",  # small, slow chunks: room to kill it half way
        "VESTRY_INVOICE_RUN_PAUSE_S": "0.2",
        "VESTRY_INVOICE_RUN_LEASE_S": "2",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.subscriptions"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def numbers(database: Path) -> list[int]:
    with sqlite3.connect(database, timeout=10) as connection:
        try:
            rows = connection.execute(
                "select number from invoices where kind = 'invoice' order by number"
            ).fetchall()
        except sqlite3.OperationalError:
            return []
    return [number for (number,) in rows]


async def answering(nc: Client) -> bool:
    try:
        await nc.request(health_subject("subscriptions"), b"", timeout=1)
    except Exception:
        return False
    return True


async def test_run_killed_mid_way_then_rerun_bills_each_member_exactly_once(
    settings: Settings, nc: Client, tmp_path: Path
) -> None:
    database = settings.data_dir / "subscriptions.sqlite3"
    log = tmp_path / "subscriptions.log"
    js = nc.jetstream()
    service = start_subscriptions(settings, log)
    try:
        await eventually(lambda: answering(nc), timeout=30, what="service up")
        await enrol_reference(nc)
        await request(nc, RunInvoicing(year=2008))
        await eventually(lambda: len(numbers(database)) >= 9, timeout=30, what="run under way")
        service.send_signal(signal.SIGKILL)
        service.wait()
        issued_before_kill = len(numbers(database))
        assert 0 < issued_before_kill < 45, "killed too late to prove anything"

        service = start_subscriptions(settings, log)
        await eventually(lambda: answering(nc), timeout=30, what="service back")
        run_id = await eventually(lambda: _rerun(nc), timeout=30, what="rerun accepted")
        await wait_for_run(nc, run_id)
        final = await wait_for_run(nc, (await request(nc, RunInvoicing(year=2008)))["run_id"])
        assert (final["issued"], final["already_billed"]) == (0, 45)

        assert numbers(database) == list(range(1, 46))
        await eventually(lambda: _issued_facts(js, 45), timeout=30, what="45 facts")
        await asyncio.sleep(1)  # nothing more trickles in
        assert await _issued_facts(js, 45)
        runs = (await request(nc, InvoiceRunStatus(year=2008)))["runs"]
        assert sum(run["issued"] for run in runs) == 45
    finally:
        service.terminate()
        service.wait(15)
    assert "Traceback" not in log.read_text()


async def _rerun(nc: Client) -> str | None:
    try:
        return (await request(nc, RunInvoicing(year=2008)))["run_id"]
    except CommandFailed as refused:
        assert refused.error.code == "busy", refused.error
        return None


async def _issued_facts(js, expected: int) -> bool:  # type: ignore[no-untyped-def]
    info = await js.stream_info("SUBSCRIPTIONS", subjects_filter="subscriptions.invoice.issued")
    return sum((info.state.subjects or {}).values()) == expected
