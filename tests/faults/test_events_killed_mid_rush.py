"""The events service killed with SIGKILL in the middle of a booking rush: after a
restart no event holds more places than it has, every booking the store kept has
exactly one fact, and no fact speaks of a booking the store lost."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats.errors
from nats.aio.client import Client

from contracts.events_v1 import (
    BookingConfirmed,
    BookingWaitlisted,
    BookPlace,
    ListEvents,
    PublishEvent,
)
from kernel.commands import CommandFailed, ServiceUnavailable, request
from kernel.settings import Settings
from tests.conftest import eventually
from tests.events_support import event_command, facts

# Large enough that the kill lands mid-rush however fast bookings are answered (the
# batched writer answers a few thousand a second).
RUSH = 2000
PLACES = 50


def start_events(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "VESTRY_NATS_URL": settings.nats_url,
        "VESTRY_DATA_DIR": str(settings.data_dir),
        "VESTRY_RELAY_POLL_S": "0.1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.events"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def answering(nc: Client) -> bool:
    try:
        await request(nc, ListEvents(), timeout=1)
    except (ServiceUnavailable, CommandFailed):
        return False
    return True


def rows(database: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(database, timeout=10) as connection:
        return connection.execute(query).fetchall()


async def test_killed_mid_rush_then_restarted_overbooks_nobody_and_says_each_booking_once(
    settings: Settings, nc: Client, tmp_path: Path
) -> None:
    log = tmp_path / "events.log"
    service = start_events(settings, log)
    try:
        await eventually(lambda: answering(nc), timeout=30, what="events answering")
        # Real time: the subprocess has no injectable clock; the event is a month away.
        starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
        created = await request(
            nc,
            event_command(capacity=PLACES, starts_at=starts, ends_at=starts + timedelta(hours=2)),
        )
        event_id = created["event_id"]
        await request(nc, PublishEvent(event_id=event_id))

        answered: list[dict[str, object]] = []

        async def book(n: int) -> None:
            command = BookPlace(event_id=event_id, name=f"P{n}", email=f"p{n}@council.example")
            # In flight when the service died: committed or not, the store says which.
            with suppress(ServiceUnavailable, nats.errors.Error):
                answered.append(await request(nc, command, timeout=2))

        rush = asyncio.gather(*(book(n) for n in range(RUSH)))
        await eventually(lambda: len(answered) >= 60, timeout=60, what="60 answers")
        service.send_signal(signal.SIGKILL)
        service.wait(10)
        await rush
        assert len(answered) < RUSH  # the kill landed mid-rush

        service = start_events(settings, log)
        await eventually(lambda: answering(nc), timeout=30, what="events answering again")
        database = settings.data_dir / "events.sqlite3"
        await eventually(
            lambda: rows(database, "select count(*) from outbox where sent_at is null") == [(0,)],
            timeout=30,
            what="outbox drained after the restart",
        )

        stored = dict(
            rows(database, f"select id, status from bookings where event_id = '{event_id}'")
        )
        ((confirmed_counter,),) = rows(
            database, f"select confirmed from events where id = '{event_id}'"
        )
        confirmed = [b for b, status in stored.items() if status == "confirmed"]
        assert len(confirmed) == confirmed_counter <= PLACES
        assert {str(r["booking_id"]) for r in answered} <= set(stored)  # an answer means a commit
        said = [
            e.data["booking_id"]
            for subject in (BookingConfirmed.SUBJECT, BookingWaitlisted.SUBJECT)
            for e in await facts(nc, subject)
        ]
        assert sorted(said) == sorted(stored)  # one fact per stored booking, none for lost ones
        # The service goes on taking bookings where it left off.
        after = await request(
            nc, BookPlace(event_id=event_id, name="Late", email="late@council.example")
        )
        expected = "confirmed" if len(confirmed) < PLACES else "waitlisted"
        assert after["status"] == expected
    finally:
        service.terminate()
        service.wait(15)
