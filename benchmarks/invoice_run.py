"""An invoicing run end to end: the RunInvoicing request until every invoice is committed
and every ``InvoiceIssued`` fact is acknowledged by JetStream (outbox empty), then a
re-run in which all are already billed. A plain nats-py publish_async run on the same
server gives the baseline.

The members are written straight into the subscriptions store before the clock
starts (enrolling 50,000 through request/reply is another benchmark).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import date
from pathlib import Path
from tempfile import TemporaryDirectory

import nats
from sqlalchemy import insert

from benchmarks import raw_nats
from benchmarks.common import Figure, rate
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
YEAR = 2026
TIERS = ("upper-tier", "district", "public-service")


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
) -> tuple[float, float, dict]:
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
            async with service.sessions() as session:
                if await outbox.unsent_count(session) == 0:
                    return completed, time.monotonic() - started, record
        await asyncio.sleep(0.02)


async def run(count: int) -> list[Figure]:
    timeout = max(120.0, count / 100)
    with (
        TemporaryDirectory(prefix="vestry-bench-") as tmp,
        NatsServer(store_dir=Path(tmp) / "jetstream") as server,
    ):
        settings = Settings(
            data_dir=Path(tmp) / "data",
            nats_url=server.url,
            smtp_port=free_port(),
            relay_batch=2000,
        )
        raw = await raw_nats.publish_then_consume(server.url, count, size=800, timeout=timeout)
        billing = BillingSettings(_env_file=None, automation=False)  # type: ignore[call-arg]
        service = subscriptions_app.create_service(settings, billing=billing)
        await enrol(service, count)
        nc = await nats.connect(server.url)
        try:
            async with service.running():
                committed_s, first_s, first = await run_and_drain(service, nc, timeout)
                _, rerun_s, rerun = await run_and_drain(service, nc, timeout)
        finally:
            await nc.close()
    if first["issued"] != count or rerun["issued"] != 0 or rerun["already_billed"] != count:
        raise RuntimeError(f"unexpected runs: {first} then {rerun}")
    first_rate = rate(count, first_s)
    raw_rate = rate(count, raw.publish_s)
    return [
        Figure(
            "first run, end to end",
            first_rate,
            "invoices/s",
            f"{count:,} in {first_s:.2f}s, chunks of {billing.invoice_run_chunk:,}",
        ),
        Figure(
            "first run, invoices committed",
            rate(count, committed_s),
            "invoices/s",
            f"{committed_s:.2f}s until the run's record said completed",
        ),
        Figure(
            "re-run, all already billed",
            rate(count, rerun_s),
            "members/s",
            f"{rerun_s:.2f}s to say {rerun['already_billed']:,} already billed",
        ),
        Figure("raw publish_async + acks", raw_rate, "msgs/s", "800-byte messages, same server"),
        Figure("vestry first run / raw publish", first_rate / raw_rate, "×"),
    ]
