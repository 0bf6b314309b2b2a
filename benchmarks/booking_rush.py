"""A booking rush through the running events service: every request sent at once
over NATS request/reply to one event with a tenth as many places, as a popular
course opening for booking would. Each request is timed from send to answer.

It runs twice: once with the service in the benchmark's own event loop (as the
other benchmarks run theirs), and once as its own process, as `vestry dev` and
production run it, so the client's thousand coroutines do not share its loop.
The baseline is a plain nats-py responder on the same server, in the same
event loop, answering the same number of requests of the same size at the
same concurrency, so the ratio is what Vestry's validation, transaction and
outbox cost over bare request/reply.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

import nats
from nats.aio.client import Client

from benchmarks.common import Figure, rate
from contracts import Envelope
from contracts.events_v1 import BookPlace, CreateEvent, ListEvents, PublishEvent, ShowEvent
from contracts.money import Money
from kernel.commands import ServiceUnavailable, request, request_raw
from kernel.settings import Settings
from services.events.app import create_service
from vestry.natsserver import NatsServer, free_port

DESCRIPTION = "1,000 concurrent bookings (fewer if --count is lower) for a tenth as many places via request/reply, vs raw nats-py"
REQUESTS = 1_000
RAW_SUBJECT = "bench.raw.echo"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def timed(coroutine) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    result = await coroutine
    return time.monotonic() - started, result


async def raw_round_trips(nc: Client, count: int, payload: bytes) -> tuple[float, list[float]]:
    """``count`` requests at once to a bare responder; returns (seconds, latencies)."""

    async def echo(msg) -> None:  # type: ignore[no-untyped-def]
        await msg.respond(b'{"ok":true}')

    subscription = await nc.subscribe(RAW_SUBJECT, queue="raw", cb=echo)
    try:
        started = time.monotonic()
        results = await asyncio.gather(
            *(timed(nc.request(RAW_SUBJECT, payload, timeout=60)) for _ in range(count))
        )
        return time.monotonic() - started, [latency for latency, _ in results]
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


async def booking_rush(nc: Client, count: int, places: int) -> tuple[float, list[float], int, int]:
    """Book ``count`` people at once onto a ``places``-place event; (seconds, latencies, confirmed, waitlisted)."""
    await answering(nc)
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
    event_id = created["event_id"]
    await request(nc, PublishEvent(event_id=event_id))
    payloads = [
        Envelope.wrap(
            BookPlace(event_id=event_id, name=f"Person {n:05d}", email=f"p{n:05d}@council.example")
        ).to_bytes()
        for n in range(count)
    ]
    started = time.monotonic()
    results = await asyncio.gather(
        *(timed(request_raw(nc, BookPlace.SUBJECT, payload, timeout=120)) for payload in payloads)
    )
    elapsed = time.monotonic() - started
    replies = [reply for _, reply in results]
    failed = [reply.error for reply in replies if not reply.ok]  # type: ignore[attr-defined]
    if failed:
        raise RuntimeError(f"{len(failed)} bookings refused, first: {failed[0]}")
    statuses = [reply.data["status"] for reply in replies]  # type: ignore[attr-defined]
    shown = await request(nc, ShowEvent(event_id=event_id))
    confirmed, waitlisted = statuses.count("confirmed"), statuses.count("waitlisted")
    if (confirmed, shown["confirmed"], waitlisted) != (places, places, count - places):
        raise AssertionError(
            f"{confirmed} confirmed answers, {shown['confirmed']} in the store, "
            f"{waitlisted} waitlisted: expected exactly {places} confirmed"
        )
    return elapsed, [latency for latency, _ in results], confirmed, waitlisted


@contextmanager
def own_process(nats_url: str, data_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The events service as ``python -m services.events``, its own store in ``data_dir``."""
    env = {
        **os.environ,
        "VESTRY_NATS_URL": nats_url,
        "VESTRY_DATA_DIR": str(data_dir),
        "VESTRY_EVENTS_DB": "",
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


async def run(count: int) -> list[Figure]:
    requests = min(count, REQUESTS)
    places = max(1, requests // 10)
    with (
        TemporaryDirectory(prefix="vestry-bench-") as tmp,
        NatsServer(store_dir=Path(tmp) / "jetstream") as server,
    ):
        settings = Settings(data_dir=Path(tmp) / "data", nats_url=server.url, smtp_port=free_port())
        nc = await nats.connect(server.url, name="bench-booking-rush")
        try:
            payload_size = len(
                Envelope.wrap(
                    BookPlace(
                        event_id="E000000", name="Person 00000", email="p00000@council.example"
                    )
                ).to_bytes()
            )
            raw_s, raw_latencies = await raw_round_trips(nc, requests, b"x" * payload_size)
            async with create_service(settings).running():
                vestry_s, latencies, confirmed, waitlisted = await booking_rush(
                    nc, requests, places
                )
            with own_process(server.url, Path(tmp) / "own-process"):
                await answering(nc, timeout=60)
                apart_s, apart_latencies, *_ = await booking_rush(nc, requests, places)
        finally:
            await nc.close()
    vestry_rate, raw_rate = rate(requests, vestry_s), rate(requests, raw_s)
    ms = 1000.0
    return [
        Figure(
            "bookings answered",
            vestry_rate,
            "bookings/s",
            f"{requests:,} at once in {vestry_s:.2f}s: {confirmed} confirmed, {waitlisted} waitlisted",
        ),
        Figure("booking latency p50", statistics.median(latencies) * ms, "ms"),
        Figure("booking latency p99", percentile(latencies, 0.99) * ms, "ms"),
        Figure(
            "bookings, service in own process",
            rate(requests, apart_s),
            "bookings/s",
            f"{apart_s:.2f}s; exactly {places} confirmed again",
        ),
        Figure("  its latency p50", statistics.median(apart_latencies) * ms, "ms"),
        Figure("  its latency p99", percentile(apart_latencies, 0.99) * ms, "ms"),
        Figure(
            "raw request/reply",
            raw_rate,
            "req/s",
            f"{requests:,} at once, {payload_size}-byte requests, bare responder",
        ),
        Figure("raw latency p50", statistics.median(raw_latencies) * ms, "ms"),
        Figure("raw latency p99", percentile(raw_latencies, 0.99) * ms, "ms"),
        Figure("vestry / raw throughput", vestry_rate / raw_rate, "×"),
        Figure(
            "vestry / raw p50 latency",
            statistics.median(latencies) / statistics.median(raw_latencies),
            "×",
        ),
    ]
