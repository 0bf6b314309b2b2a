"""The public site under load: the programme (``/events``), one event's page and the
booking form, served by the web service under uvicorn, in its own process, from the
three services, each in its own process, over a real nats-server, as ``vestry dev``
and production run them. 50 keep-alive clients (benchmarks.http_client, in this process)
ask at once.

Each visitor first GETs the booking form once, for its CSRF cookie and token, and
sends that cookie on every request after, as a browser would. The booking form is
then POSTed with a new email each time to one event with places for all; an answer
counts when it is the 303 to the booking's page (the redirect is not followed).

Baselines from the same run: a bare Starlette app under uvicorn with the same
options, in its own process on another port, serving the bytes of the real ``/events``
page as a static page, driven by the same clients; and plain nats-py request/reply
to a bare responder at the same concurrency. Each figure's note gives the CPU
seconds each process spent per answer (from /proc), which says where the time goes.

The notifications service points at a closed SMTP port: it composes each booking's
email and then finds no mail server (as if a remote one were down), so it costs what
it would without an SMTP server sharing the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

import nats
from nats.aio.client import Client

from benchmarks.common import Figure, rate
from benchmarks.http_client import LoadClient
from contracts import Envelope
from contracts.events_v1 import BookPlace, CheckIn, CreateEvent, PublishEvent, ShowEvent
from contracts.money import Money
from contracts.subscriptions_v1 import ListMembers
from contracts.system_v1 import health_subject
from kernel.commands import CommandFailed, ServiceUnavailable, request
from vestry.devstack import _die_with_parent
from vestry.natsserver import NatsServer, free_port

DESCRIPTION = (
    "public site (uvicorn, own process) at 50 clients: /events, /events/{id}, booking form, "
    "vs a bare ASGI page and raw request/reply"
)
DEFAULT_COUNT = 2_000  # requests per measured path
CLIENTS = 50
EVENTS = 20
PHASE_S = 10.0  # a path stops being asked after this long, however many are done
WARM_UP = CLIENTS  # unmeasured requests before each path: one per client
READY_S = 60.0
ROOT = Path(__file__).resolve().parents[1]
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
RAW_SUBJECT = "bench.raw.web"
MS = 1000.0
# services.web.app.serve's options, which the bare app runs under too.
UVICORN_OPTIONS = {
    "proxy_headers": True,
    "forwarded_allow_ips": "127.0.0.1",
    "access_log": False,
    "server_header": False,
    "timeout_graceful_shutdown": 10,
}
KINDS = ("workshop", "seminar", "forum", "training_course", "conference")
PROGRAMMES = (
    "business_process_improvement",
    "project_and_programme_management",
    "customer_service",
    "information_sharing_and_security",
)


# The processes


def cpu_seconds(pid: int) -> float:
    """User + system CPU ``pid`` has used so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Children:
    """Child processes with their output in ``logs``; all stopped by ``stop``."""

    logs: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, *args],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # gone with us even if we are killed
            )

    def check(self) -> None:
        """Raise if a child has exited, with the end of its log."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with code {process.returncode}:\n{self.tail(name)}"
                )

    def tail(self, name: str, lines: int = 20) -> str:
        try:
            text = (self.logs / f"{name}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def pids(self) -> dict[str, int]:
        return {name: process.pid for name, process in self.processes.items()}

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every child, wait, then SIGKILL whatever is left."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def stack(tmp: Path) -> Iterator[tuple[NatsServer, Children, str, str]]:
    """nats-server, the three services, the web service and the bare app, all stopped at the end.
    Yields the server, the children, the site's URL and the bare app's URL."""
    with ExitStack() as stopping:
        server = stopping.enter_context(NatsServer(store_dir=tmp / "jetstream"))
        web_port, bare_port = free_port(), free_port()
        site = f"http://127.0.0.1:{web_port}"
        env = {
            **os.environ,
            "VESTRY_NATS_URL": server.url,
            "VESTRY_DATA_DIR": str(tmp / "data"),
            "VESTRY_SUBSCRIPTIONS_DB": "",
            "VESTRY_EVENTS_DB": "",
            "VESTRY_NOTIFICATIONS_DB": "",
            "VESTRY_PUBLIC_URL": site,
            "VESTRY_SMTP_HOST": "127.0.0.1",
            "VESTRY_SMTP_PORT": str(free_port()),  # nothing listens: see the docstring
            "VESTRY_SMTP_STARTTLS": "false",
            "VESTRY_SMTP_TLS": "false",
            "VESTRY_LOG_LEVEL": "WARNING",
            "VESTRY_WEB_HOST": "127.0.0.1",
            "VESTRY_WEB_PORT": str(web_port),
            "VESTRY_WEB_SECURE_COOKIES": "false",
            "VESTRY_WEB_COOKIE_SECRET": "bench-cookie-secret",
            "VESTRY_WEB_BOOKINGS_PER_MINUTE": "100000",
        }
        children = Children(tmp / "logs", env)
        stopping.callback(children.stop)
        for service in ("subscriptions", "events", "notifications", "web"):
            children.start(service, "-m", f"services.{service}")
        page = tmp / "page.html"
        children.start("bare", "-m", "benchmarks.web", "bare", str(bare_port), str(page))
        yield server, children, site, f"http://127.0.0.1:{bare_port}"


async def answering(nc: Client, children: Children) -> None:
    """Wait until each service answers its commands over NATS."""
    probes: list[Callable[[], Awaitable[object]]] = [
        lambda: request(nc, CheckIn(reference="READY-PROBE"), timeout=2),
        lambda: request(nc, ListMembers(), timeout=2),
        lambda: nc.request(health_subject("notifications"), b"{}", timeout=2),
    ]
    deadline = time.monotonic() + READY_S
    for probe in probes:
        while True:
            children.check()
            try:
                await probe()
                break
            except CommandFailed:
                break  # refused: it answers
            except (ServiceUnavailable, nats.errors.NoRespondersError, nats.errors.TimeoutError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the services do not answer after {READY_S:.0f}s") from None
                await asyncio.sleep(0.05)


async def serving(session: LoadClient, url: str, name: str, children: Children) -> None:
    deadline = time.monotonic() + READY_S
    while True:
        children.check()
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            answer = await session.get(url)
            if answer.status == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} does not answer {url} after {READY_S:.0f}s")
        await asyncio.sleep(0.05)


async def programme(nc: Client, count: int) -> tuple[list[str], str]:
    """``EVENTS`` published upcoming events; returns their ids and the one to book, which has
    a place for every booking this benchmark makes."""
    day = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    ids = []
    for n in range(EVENTS):
        starts = day + timedelta(days=7 + 3 * n)
        created = await request(
            nc,
            CreateEvent(
                kind=KINDS[n % len(KINDS)],  # type: ignore[arg-type]
                programme=PROGRAMMES[n % len(PROGRAMMES)],  # type: ignore[arg-type]
                title=f"Lean reviews in local government, part {n + 1}",
                description="Mapping a service end to end, from the resident's first contact.",
                venue="Manchester Town Hall" if n % 3 else None,
                online_url=None if n % 3 else "https://meet.example.gov.uk/lean",
                starts_at=starts,
                ends_at=starts + timedelta(hours=3),
                capacity=min(100_000, 2 * count + 10 * CLIENTS) if n == 0 else 30 + n,
                member_price=Money(amount_minor=0),
                non_member_price=Money(amount_minor=9500 + 500 * n),
            ),
        )
        await request(nc, PublishEvent(event_id=created["event_id"]))
        ids.append(created["event_id"])
    return ids, ids[0]


# The load


@dataclass
class Load:
    done: int
    seconds: float
    latencies: list[float]
    statuses: Counter[int]
    cpu: dict[str, float]  # CPU seconds per process while it ran

    @property
    def rate(self) -> float:
        return rate(self.done, self.seconds)

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) * MS

    @property
    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * MS

    def per_answer(self, *names: str) -> str:
        """CPU milliseconds per answer, per process."""
        shown = [(name, self.cpu.get(name, 0.0)) for name in names]
        return ", ".join(f"{name} {seconds / self.done * MS:.2f}" for name, seconds in shown)


def combined(loads: list[Load]) -> Load:
    """Several runs of one load as one: answers over the time they took together."""
    cpu: Counter[str] = Counter()
    for load in loads:
        cpu.update(load.cpu)
    return Load(
        sum(load.done for load in loads),
        sum(load.seconds for load in loads),
        [latency for load in loads for latency in load.latencies],
        sum((load.statuses for load in loads), Counter()),
        dict(cpu),
    )


Call = Callable[[int, int], Awaitable[int]]  # (request number, client) -> HTTP status


async def drive(count: int, call: Call, pids: dict[str, int], *, clients: int = CLIENTS) -> Load:
    """``count`` calls from ``clients`` at once, until done or ``PHASE_S`` is up."""
    numbers = itertools.count()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + PHASE_S

    async def client(number: int) -> None:
        while True:
            n = next(numbers)
            if n >= count or time.monotonic() > deadline:
                return
            sent = time.perf_counter()
            status = await call(n, number)
            latencies.append(time.perf_counter() - sent)
            statuses[status] += 1

    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    await asyncio.gather(*(client(number) for number in range(clients)))
    seconds = time.perf_counter() - started
    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    return Load(len(latencies), seconds, latencies, statuses, cpu)


@dataclass
class Visitor:
    cookie: str
    token: str


async def visitors(session: LoadClient, form: str) -> list[Visitor]:
    """One per client: GET the booking form once, keep its CSRF cookie and token."""

    async def visit(client: int) -> Visitor:
        page = await session.get(form, client=client)
        cookie = page.cookie("vestry_csrf")
        if page.status != 200 or cookie is None:
            raise RuntimeError(f"GET {form}: {page.status}, CSRF cookie {cookie!r}")
        found = CSRF.search(page.text)
        if found is None:
            raise RuntimeError(f"{form} has no CSRF token")
        return Visitor(cookie, found.group(1))

    return list(await asyncio.gather(*(visit(client) for client in range(CLIENTS))))


def getting(session: LoadClient, urls: list[str], people: list[Visitor]) -> Call:
    async def call(n: int, client: int) -> int:
        headers = {"Cookie": f"vestry_csrf={people[client].cookie}"}
        answer = await session.get(urls[n % len(urls)], client=client, headers=headers)
        return answer.status

    return call


def booking(session: LoadClient, form: str, people: list[Visitor]) -> Call:
    """POST the form as ``people``, each time with a new name and email."""
    numbers = itertools.count()

    async def call(n: int, client: int) -> int:
        person, who = people[client], next(numbers)
        answer = await session.post_form(
            form,
            client=client,
            headers={"Cookie": f"vestry_csrf={person.cookie}"},
            form={
                "csrf_token": person.token,
                "name": f"Person {who:06d}",
                "email": f"p{who:06d}@council.example",
                "phone": "",
                "member_id": "",
                "organisation_name": "Wigan Council",
            },
        )
        return answer.status

    return call


async def measured(count: int, call: Call, pids: dict[str, int], expect: int) -> Load:
    """A warm-up, then the measured load; raises unless every answer was ``expect``."""
    for load in (await drive(WARM_UP, call, pids), await drive(count, call, pids)):
        wrong = {status: n for status, n in load.statuses.items() if status != expect}
        if wrong:
            raise RuntimeError(f"expected only {expect} answers, also had {wrong}")
    return load


async def raw_round_trips(nc: Client, count: int, payload: bytes) -> Load:
    """Plain nats-py request/reply to a bare responder, ``CLIENTS`` in flight."""

    async def echo(msg) -> None:  # type: ignore[no-untyped-def]
        await msg.respond(b'{"ok":true}')

    subscription = await nc.subscribe(RAW_SUBJECT, queue="raw", cb=echo)

    async def call(n: int, client: int) -> int:
        await nc.request(RAW_SUBJECT, payload, timeout=10)
        return 200

    try:
        return await measured(count, call, {"load": os.getpid()}, 200)
    finally:
        await subscription.unsubscribe()


async def run(count: int) -> list[Figure]:
    with TemporaryDirectory(prefix="vestry-bench-") as tmp, stack(Path(tmp)) as started:
        server, children, site, bare = started
        nc = await nats.connect(server.url, name="bench-web")
        try:
            return await measure(count, nc, server, children, site, bare, Path(tmp) / "page.html")
        finally:
            await nc.close()


async def measure(
    count: int,
    nc: Client,
    server: NatsServer,
    children: Children,
    site: str,
    bare: str,
    page: Path,
) -> list[Figure]:
    async with LoadClient() as session:
        await answering(nc, children)
        await serving(session, f"{site}/healthz", "the web service", children)
        ids, to_book = await programme(nc, count)
        answer = await session.get(f"{site}/events")
        body = answer.body
        if answer.status != 200 or body.count(b'class="vestry-event"') != EVENTS:
            raise RuntimeError(f"/events answered {answer.status} without the {EVENTS} events")
        await asyncio.to_thread(publish_page, page, body)
        await serving(session, f"{bare}/events", "the bare app", children)

        assert server.process is not None
        pids = {**children.pids(), "nats": server.process.pid, "load": os.getpid()}
        bare_pids = {"bare": pids.pop("bare"), "load": os.getpid()}
        form = f"{site}/events/{to_book}/book"
        people = await visitors(session, form)

        # The bare page is quick to measure and the machine noisy: three runs between the others.
        static = getting(session, [f"{bare}/events"], people)
        bare_runs = [await measured(count, static, bare_pids, 200)]
        listing = await measured(count, getting(session, [f"{site}/events"], people), pids, 200)
        bare_runs.append(await measured(count, static, bare_pids, 200))
        pages = [f"{site}/events/{event_id}" for event_id in ids]
        showing = await measured(count, getting(session, pages, people), pids, 200)
        door = await measured(count, getting(session, [f"{site}/healthz"], people), pids, 200)
        booked = await measured(count, booking(session, form, people), pids, 303)
        bare_runs.append(await measured(count, static, bare_pids, 200))
        bare_load = combined(bare_runs)
        shown = await request(nc, ShowEvent(event_id=to_book))
        if shown["confirmed"] != booked.done + WARM_UP:
            raise AssertionError(
                f"{booked.done + WARM_UP} bookings answered 303, {shown['confirmed']} confirmed"
            )
        size = len(
            Envelope.wrap(
                BookPlace(event_id=to_book, name="Person p000000", email="p000000@council.example")
            ).to_bytes()
        )
        raw = await raw_round_trips(nc, count, b"x" * size)

    site_cpu = ("web", "events", "nats", "load")
    return [
        Figure(
            "bare ASGI page (Starlette)",
            bare_load.rate,
            "pages/s",
            f"{bare_load.done:,} in {bare_load.seconds:.2f}s, 3 runs at "
            f"{' / '.join(f'{run.rate:,.0f}' for run in bare_runs)}/s, "
            f"the /events bytes ({len(body):,} B); CPU ms/page: {bare_load.per_answer('bare', 'load')}",
        ),
        Figure("  latency p50", bare_load.p50, "ms"),
        Figure("  latency p99", bare_load.p99, "ms"),
        *page_figures("/events", listing, bare_load, site_cpu),
        *page_figures("/events/{id}", showing, bare_load, site_cpu),
        Figure(
            "/healthz (the door, no NATS)",
            door.rate,
            "answers/s",
            f"{door.done:,} in {door.seconds:.2f}s; CPU ms/answer: {door.per_answer('web', 'load')}",
        ),
        Figure(
            "booking form POST → 303",
            booked.rate,
            "bookings/s",
            f"{booked.done:,} in {booked.seconds:.2f}s, all confirmed; CPU ms/booking: "
            f"{booked.per_answer('web', 'events', 'notifications', 'subscriptions', 'nats', 'load')}",
        ),
        Figure("  latency p50", booked.p50, "ms"),
        Figure("  latency p99", booked.p99, "ms"),
        Figure(
            "raw request/reply",
            raw.rate,
            "req/s",
            f"{raw.done:,}, {CLIENTS} in flight, {size}-byte requests, bare responder",
        ),
        Figure("  latency p50", raw.p50, "ms"),
        Figure("  latency p99", raw.p99, "ms"),
        Figure("bookings / raw request/reply", booked.rate / raw.rate, "×"),
    ]


def page_figures(path: str, load: Load, bare: Load, cpu: tuple[str, ...]) -> list[Figure]:
    return [
        Figure(
            path,
            load.rate,
            "pages/s",
            f"{load.done:,} in {load.seconds:.2f}s; CPU ms/page: {load.per_answer(*cpu)}",
        ),
        Figure("  latency p50", load.p50, "ms"),
        Figure("  latency p99", load.p99, "ms"),
        Figure(f"  {path} / bare page", load.rate / bare.rate, "×", "aim ≥ 0.3"),
    ]


# The bare app, in its own process: python -m benchmarks.web bare PORT PAGE


def publish_page(page: Path, body: bytes) -> None:
    """Hand the bare app its page, whole (it waits for the file to appear)."""
    part = page.with_suffix(".part")
    part.write_bytes(body)
    part.replace(page)


def bare_site(port: int, page: Path) -> None:
    """A Starlette app answering every path with the bytes in ``page`` (once it appears),
    under uvicorn with the web service's options."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    deadline = time.monotonic() + 2 * READY_S
    while not page.exists():
        if time.monotonic() > deadline:
            sys.exit(f"{page} did not appear")
        time.sleep(0.05)
    body = page.read_bytes()

    async def static(request: Request) -> Response:
        return Response(body, media_type="text/html; charset=utf-8")

    app = Starlette(routes=[Route("/{path:path}", static)])
    uvicorn.run(app, host="127.0.0.1", port=port, **UVICORN_OPTIONS)  # type: ignore[arg-type]


if __name__ == "__main__":
    if sys.argv[1:2] != ["bare"] or len(sys.argv) != 4:
        sys.exit("usage: python -m benchmarks.web bare PORT PAGE")
    bare_site(int(sys.argv[2]), Path(sys.argv[3]))
