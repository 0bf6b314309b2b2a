"""A consuming service killed with SIGKILL mid-run: after a restart every fact is applied once."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from nats.aio.client import Client

from contracts import Envelope
from kernel.settings import Settings
from tests.conftest import eventually
from tests.stack import membership_started

FACTS = 3000


def start_events(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "VESTRY_NATS_URL": settings.nats_url,
        "VESTRY_DATA_DIR": str(settings.data_dir),
        "VESTRY_ACK_WAIT_S": "1",
        "VESTRY_FETCH_BATCH": "50",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.events"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def count(database: Path, table: str) -> int:
    if not database.exists():
        return 0
    with sqlite3.connect(database, timeout=10) as connection:
        try:
            return connection.execute(f"select count(*) from {table}").fetchone()[0]
        except sqlite3.OperationalError:  # not migrated yet
            return 0


async def test_service_killed_mid_run_applies_every_fact_once(
    settings: Settings, nc: Client, tmp_path: Path
) -> None:
    js = nc.jetstream()
    from kernel.streams import ensure_streams

    await ensure_streams(js, duplicate_window_s=600)
    acks = []
    for number in range(FACTS):
        fact = membership_started(number)
        envelope = Envelope.wrap(fact)
        acks.append(
            await js.publish_async(
                fact.SUBJECT, envelope.to_bytes(), headers={"Nats-Msg-Id": envelope.id}
            )
        )
    await asyncio.gather(*acks)

    database = settings.data_dir / "events.sqlite3"
    log = tmp_path / "events.log"
    service = start_events(settings, log)
    try:
        await eventually(
            lambda: count(database, "inbox") > FACTS // 5, timeout=60, what="consuming"
        )
        service.send_signal(signal.SIGKILL)
        service.wait()
        applied_before_restart = count(database, "inbox")
        info = await js.consumer_info("SUBSCRIPTIONS", "events-subscriptions")
        assert applied_before_restart < FACTS, "killed too late to prove anything"
        in_flight = info.num_ack_pending

        service = start_events(settings, log)
        await eventually(lambda: count(database, "inbox") == FACTS, timeout=90, what="all applied")
        await eventually(lambda: _drained(js), timeout=30, what="consumer drained")
    finally:
        service.terminate()
        service.wait(15)

    assert count(database, "membership_view") == FACTS
    assert count(database, "inbox") == FACTS
    assert in_flight > 0, "some facts were delivered but not acknowledged when the service died"
    assert "Traceback" not in log.read_text()


async def _drained(js) -> bool:  # type: ignore[no-untyped-def]
    info = await js.consumer_info("SUBSCRIPTIONS", "events-subscriptions")
    return info.num_pending == 0 and info.num_ack_pending == 0
