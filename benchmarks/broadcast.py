"""A broadcast to ``count`` contacts by email to a real local SMTP server (aiosmtpd) and
by SMS to the capture sink, through the running notifications service: the command
plans every ledger row in one transaction, the sender claims, sends and records them
in batches. Timed from the command until the broadcast's completion fact is in
JetStream. Then booking-to-mailbox latency: bookings made one after another through
the events service, each timed from the request until the SMTP server has its mail.

Baselines from the same run, on the same server: plain nats-py JetStream publish and
pull-consume of as many messages as there were deliveries, and core request/reply
round trips one at a time for the latency.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

import nats
import psutil
from nats.aio.client import Client
from sqlalchemy import insert

from benchmarks import raw_nats
from benchmarks.common import Figure, percentile, rate
from contracts.events_v1 import BookPlace, CreateEvent, PublishEvent
from contracts.money import Money
from contracts.notifications_v1 import BroadcastCompleted, SendBroadcast
from kernel import migrations
from kernel.commands import ServiceUnavailable, request
from kernel.runtime import Service
from kernel.settings import Settings
from services.events.app import create_service as create_events
from services.notifications import store
from services.notifications.app import MIGRATIONS
from services.notifications.app import create_service as create_notifications
from services.notifications.sms import read_captured
from vestry.natsserver import NatsServer, free_port, wait_for_port

DESCRIPTION = (
    "broadcast by email (aiosmtpd) + SMS (capture) and booking-to-mailbox latency, vs raw nats-py"
)
BOOKINGS = 500
TO = re.compile(rb"^To: (\S+)", re.MULTILINE)
ADVISORY = {
    "reference": "WARP-2026-014",
    "severity": "high",
    "title": "Phishing emails posing as council tax refunds",
    "summary": "Links lead to a fake Microsoft 365 sign-in page.",
    "action": "Block the sender domain and reset any password typed in.",
}


class SmtpServer:
    """The development capture server (aiosmtpd) in its own process, as ``vestry dev`` runs it:
    in this process it would share the interpreter lock with the service it measures."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SmtpServer:
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vestry.mailcapture",
                "--dir",
                str(self.directory),
                "--port",
                str(self.port),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._process is not None
        self._process.terminate()
        self._process.wait(10)

    def count(self) -> int:
        return sum(1 for _ in self.directory.glob("*.eml"))

    def arrivals(self) -> dict[str, float]:
        """Each recipient's first mail: when it was written (wall clock)."""
        found: dict[str, float] = {}
        for path in self.directory.glob("*.eml"):
            match = TO.search(path.read_bytes())
            if match:
                found.setdefault(match.group(1).decode(), path.stat().st_mtime)
        return found


async def seed_contacts(service: Service, count: int) -> None:
    """``count`` warp subscribers with email and SMS consent, written straight to the store."""
    await migrations.upgrade(service.engine, MIGRATIONS)
    contacts = [
        {
            "id": str(uuid.uuid4()),
            "email": f"officer{n:06d}@council.example.gov.uk",
            "name": f"Officer {n}",
            "organisation": None,
            "source": "bench",
            "mobile": f"+4474{n:08d}",
            "email_consent": True,
            "sms_consent": True,
        }
        for n in range(count)
    ]
    async with service.sessions() as session, session.begin():
        for first in range(0, count, 5000):
            chunk = contacts[first : first + 5000]
            await session.execute(insert(store.Contact), chunk)
            await session.execute(
                insert(store.ContactTopic),
                [{"contact_id": c["id"], "topic": "warp"} for c in chunk],
            )


async def completed(nc: Client) -> bool:
    try:
        info = await nc.jetstream().stream_info(
            "NOTIFICATIONS", subjects_filter=BroadcastCompleted.SUBJECT
        )
    except Exception:
        return False
    return bool(info.state.subjects and info.state.subjects.get(BroadcastCompleted.SUBJECT))


class PeakRss:
    """The most memory (RSS) this process held, sampled every ``interval`` seconds while
    the block runs: the service runs here, in this process."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak = 0
        self._process = psutil.Process()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PeakRss:
        self.peak = self._process.memory_info().rss
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task
        self.peak = max(self.peak, self._process.memory_info().rss)

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self._process.memory_info().rss)
            await asyncio.sleep(self.interval)


async def broadcast(settings: Settings, nc: Client, count: int, timeout: float) -> dict[str, float]:
    service = create_notifications(settings)
    await seed_contacts(service, count)
    async with service.running(), PeakRss() as memory:
        await _answering(nc, SendBroadcast.SUBJECT)
        # The completion fact is heard as JetStream takes it in (a stream's subject is
        # a NATS subject too), rather than asked for over and over in this process.
        heard = await nc.subscribe(BroadcastCompleted.SUBJECT, max_msgs=1)
        started = time.monotonic()
        answer = await request(
            nc,
            SendBroadcast(
                topic="warp", channels=["email", "sms"], template="security_advisory", data=ADVISORY
            ),
            timeout=timeout,
        )
        planned = time.monotonic()
        try:
            await heard.next_msg(timeout=timeout)
        except nats.errors.TimeoutError:
            raise TimeoutError("broadcast not completed") from None
        while not await completed(nc):  # heard as it went in: stored a moment later
            if time.monotonic() > started + timeout:
                raise TimeoutError("broadcast completed but not in JetStream")
            await asyncio.sleep(0.005)
        done = time.monotonic()
    return {
        "deliveries": answer["planned"],
        "plan_s": planned - started,
        "total_s": done - started,
        "peak_rss_mb": memory.peak / 1e6,
    }


async def _answering(nc: Client, subject: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await nc.request(subject, b"{}", timeout=1)  # refused as invalid: it answers
            return
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError, ServiceUnavailable):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


async def booking_latencies(
    settings: Settings, nc: Client, smtp: SmtpServer, count: int
) -> list[float]:
    """Bookings one after another; each from its request until its mail is at the SMTP server."""
    async with create_events(settings).running(), create_notifications(settings).running():
        await _answering(nc, CreateEvent.SUBJECT)
        starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
        created = await request(
            nc,
            CreateEvent(
                kind="workshop",
                programme="customer_service",
                title="Customer service forum",
                venue="Preston Guild Hall",
                starts_at=starts,
                ends_at=starts + timedelta(hours=3),
                capacity=count,
                member_price=Money(amount_minor=0),
                non_member_price=Money(amount_minor=0),
            ),
        )
        await request(nc, PublishEvent(event_id=created["event_id"]))
        before = smtp.count()
        sent: dict[str, float] = {}
        for n in range(count):
            email = f"booker{n:05d}@council.example.gov.uk"
            sent[email] = time.time()
            await request(
                nc, BookPlace(event_id=created["event_id"], name=f"Booker {n}", email=email)
            )
            await asyncio.sleep(0.01)  # people book one after another, not all at once
        deadline = time.monotonic() + 300
        while smtp.count() < before + count:
            if time.monotonic() > deadline:
                raise TimeoutError("confirmations not all at the SMTP server")
            await asyncio.sleep(0.1)
    arrived = smtp.arrivals()
    return [arrived[email] - at for email, at in sent.items()]


async def raw_round_trips(nc: Client, count: int) -> list[float]:
    async def echo(msg) -> None:  # type: ignore[no-untyped-def]
        await msg.respond(b"ok")

    subscription = await nc.subscribe("bench.raw.echo", cb=echo)
    latencies = []
    try:
        for _ in range(count):
            started = time.monotonic()
            await nc.request("bench.raw.echo", b"x" * 600, timeout=5)
            latencies.append(time.monotonic() - started)
    finally:
        await subscription.unsubscribe()
    return latencies


async def run(count: int) -> list[Figure]:
    timeout = max(300.0, count / 20)
    bookings = min(BOOKINGS, count)
    with (
        TemporaryDirectory(prefix="vestry-bench-") as tmp,
        NatsServer(store_dir=Path(tmp) / "jetstream") as server,
        SmtpServer(Path(tmp) / "mail") as smtp,
    ):
        settings = Settings(
            data_dir=Path(tmp) / "data",
            nats_url=server.url,
            smtp_port=smtp.port,
            quiet_hours="",
            email_rate_per_s=1_000_000,
            sms_rate_per_s=1_000_000,
            send_concurrency=50,
        )
        nc = await nats.connect(server.url, name="bench-broadcast")
        try:
            sent = await broadcast(settings, nc, count, timeout)
            emails = smtp.count()
            sms = len(read_captured(settings.data_dir / "sms"))
            if (emails, sms) != (count, count):
                raise AssertionError(f"{emails} emails and {sms} SMS, not {count} of each")
            raw = await raw_nats.publish_then_consume(
                server.url, int(sent["deliveries"]), timeout=timeout
            )
            with SmtpServer(Path(tmp) / "mail2") as booking_smtp:  # its own, so counting is cheap
                latencies = await booking_latencies(
                    settings.model_copy(
                        update={"data_dir": Path(tmp) / "data2", "smtp_port": booking_smtp.port}
                    ),
                    nc,
                    booking_smtp,
                    bookings,
                )
            raw_latencies = await raw_round_trips(nc, bookings)
        finally:
            await nc.close()
    deliveries = int(sent["deliveries"])
    vestry_rate = rate(deliveries, sent["total_s"])
    raw_rate = rate(deliveries, raw.total_s)
    p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
    raw_p50, raw_p95 = percentile(raw_latencies, 0.5), percentile(raw_latencies, 0.95)
    ms = 1000.0
    return [
        Figure(
            "broadcast planned (one transaction)",
            rate(deliveries, sent["plan_s"]),
            "rows/s",
            f"{deliveries:,} rows in {sent['plan_s']:.2f}s",
        ),
        Figure(
            "broadcast delivered end to end",
            vestry_rate,
            "deliveries/s",
            f"{count:,} emails + {count:,} SMS in {sent['total_s']:.1f}s",
        ),
        Figure(
            "peak memory (RSS) while sending",
            sent["peak_rss_mb"],
            "MB",
            "the service and this benchmark, one process",
        ),
        Figure(
            "raw publish_async + pull/ack",
            raw_rate,
            "msgs/s",
            f"{raw.total_s:.2f}s for {deliveries:,}",
        ),
        Figure("broadcast / raw", vestry_rate / raw_rate, "×"),
        Figure(
            "booking → mailbox p50",
            p50 * ms,
            "ms",
            f"{bookings} bookings one after another; mean {statistics.mean(latencies) * ms:.0f} ms",
        ),
        Figure("booking → mailbox p95", p95 * ms, "ms"),
        Figure("raw request/reply p50", raw_p50 * ms, "ms", "one at a time"),
        Figure("raw request/reply p95", raw_p95 * ms, "ms"),
        Figure("booking→mailbox p50 / raw p50", p50 / raw_p50, "×"),
    ]
