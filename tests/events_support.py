"""Helpers for tests that drive the events service: a clock to move, events to book,
and the facts JetStream holds."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from contracts import Envelope
from contracts.events_v1 import CheckIn, CreateEvent, PublishEvent
from contracts.money import Money
from kernel.commands import CommandFailed, ServiceUnavailable, request
from kernel.runtime import Service
from kernel.settings import Settings
from services.events.app import create_service
from services.events.settings import EventsSettings
from tests.sealed import opened

START = datetime(2027, 1, 11, 9, 0, tzinfo=UTC)
EVENT_DAY = datetime(2027, 2, 10, 10, 0, tzinfo=UTC)  # 10:00 in London (GMT)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    @staticmethod
    def real() -> Clock:
        """A clock that follows the wall clock (for demos run as a person would)."""
        return WallClock()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class WallClock(Clock):
    def __call__(self) -> datetime:
        return datetime.now(UTC)


@asynccontextmanager
async def events_service(
    settings: Settings, clock: Clock, *, replicas: int = 1, poll_s: float = 3600
) -> AsyncIterator[list[Service]]:
    """``replicas`` events services on one store, answering the same queue group."""
    own = EventsSettings(timekeeper_poll_s=poll_s)
    async with AsyncExitStack() as stack:
        services = []
        for _ in range(replicas):
            service = create_service(settings, events_settings=own, clock=clock)
            services.append(await stack.enter_async_context(service.running()))
        await _answering(settings.nats_url)
        yield services


async def _answering(url: str, timeout: float = 10.0) -> None:
    """Wait until the server routes the last command the service subscribed to."""
    nc = await nats.connect(url)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                await request(nc, CheckIn(reference="READY-PROBE"))
            except CommandFailed:
                return  # refused as unknown: the service answers
            except ServiceUnavailable:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.02)
    finally:
        await nc.close()


def event_command(**overrides: Any) -> CreateEvent:
    fields: dict[str, Any] = {
        "kind": "workshop",
        "programme": "business_process_improvement",
        "title": "Lean reviews in local government",
        "description": "Mapping a service end to end.",
        "venue": "Manchester Town Hall",
        "starts_at": EVENT_DAY,
        "ends_at": EVENT_DAY + timedelta(hours=3),
        "capacity": 50,
        "member_price": Money(amount_minor=0),
        "non_member_price": Money(amount_minor=9500),
    }
    fields.update(overrides)
    return CreateEvent(**fields)


async def published_event(nc: Client, **overrides: Any) -> str:
    created = await request(nc, event_command(**overrides))
    await request(nc, PublishEvent(event_id=created["event_id"]))
    return created["event_id"]


async def facts(nc: Client, subject: str | None = None) -> list[Envelope]:
    """Every fact in the EVENTS stream (on ``subject``, if given), oldest first."""
    js = nc.jetstream()
    try:
        info = await js.stream_info("EVENTS")
    except NotFoundError:
        return []
    if not info.state.messages:
        return []
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg("EVENTS", seq)
        except NotFoundError:
            continue
        if subject is None or msg.subject == subject:
            found.append(await opened(nc, msg.data))
    return found


async def fact_count(nc: Client, subject: str) -> int:
    return len(await facts(nc, subject))


def requests_answered(service: Service, subject: str) -> int:
    """How many requests on ``subject`` this replica took from its queue group."""
    for subscriber in service.broker.subscribers:
        subscription = getattr(subscriber, "subscription", None)
        if subscription is not None and subscription.subject == subject:
            return subscription.delivered
    raise LookupError(f"{service.name} does not answer {subject}")


@contextmanager
def events_in_thread(settings: Settings) -> Iterator[Clock]:
    """The events service in its own thread and loop, as a separate process would be
    (for tests that drive the synchronous CLI)."""
    clock = Clock()
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        async with events_service(settings, clock):
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30), "the events service did not start"
    yield clock
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)
