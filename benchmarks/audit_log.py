"""The back office's audit log page: reading OPS back a page at a time.

OPS holds ``count`` records. Measured: the latest 50 (a page with no search), and a
search that matches nothing among the 2,000 records a page reads at most (the worst a
page costs), each through ``kernel.audit_log.page_of_records`` as the page calls it.
Baseline from the same run: the same 2,000 records fetched raw with nats-py's
``get_msg``, in the same windows, without reading them.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import nats

from benchmarks.common import Figure
from contracts import Envelope
from kernel import audit
from kernel.audit_log import page_of_records
from kernel.streams import OPS_STREAM
from vestry.natsserver import NatsServer

DESCRIPTION = "the audit log page: the latest 50 and a 2,000-record search, vs raw get_msg"
DEFAULT_COUNT = 10_000
EXAMINED = 2_000
WINDOW = 50
ROUNDS = 7
MS = 1000.0


async def run(count: int) -> list[Figure]:
    with TemporaryDirectory() as directory:
        server = NatsServer(Path(directory) / "js").start()
        try:
            return await _measure(server.url, max(count, EXAMINED))
        finally:
            server.stop()


async def _measure(url: str, count: int) -> list[Figure]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=10)
        by = audit.performer(None, "_INBOX_operator.x")
        records = [
            Envelope.wrap(
                audit.action_recorded(
                    "record_payment", service="subscriptions", by=by, target=f"INV-{n:06d}"
                )
            )
            for n in range(count)
        ]
        for first in range(0, count, 1_000):
            await audit.publish(
                js, records[first : first + 1_000], duplicate_window_s=120, replicas=1
            )
        last = (await js.stream_info(OPS_STREAM)).state.last_seq

        async def latest() -> None:
            rows, _ = await page_of_records(js, limit=50)
            assert len(rows) == 50

        async def search() -> None:
            rows, older = await page_of_records(js, action="void_invoice", examine=EXAMINED)
            assert rows == [] and older == last - EXAMINED + 1

        async def raw() -> None:
            for top in range(last, last - EXAMINED, -WINDOW):
                window = range(top, top - WINDOW, -1)
                await asyncio.gather(*(js.get_msg(OPS_STREAM, seq=seq) for seq in window))

        page_s, search_s, raw_s = [await _median(step) for step in (latest, search, raw)]
    finally:
        await nc.close()
    return [
        Figure("latest 50, no search", page_s * MS, "ms", f"OPS holding {count:,}"),
        Figure(f"search reading {EXAMINED:,}, no match", search_s * MS, "ms"),
        Figure(f"raw get_msg of {EXAMINED:,}", raw_s * MS, "ms", f"windows of {WINDOW}"),
        Figure("raw / search (records read)", raw_s / search_s, "×"),
    ]


async def _median(step) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        await step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)
