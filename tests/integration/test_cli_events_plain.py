"""The same commands as a person reads them: Rich tables and sentences, not JSON."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from typer.testing import CliRunner

from kernel.settings import Settings
from tests.events_support import Clock, events_in_thread
from vestry.cli import app
from vestry.terminal import console

runner = CliRunner()


@pytest.fixture
def running_events(settings: Settings) -> Iterator[Clock]:
    with events_in_thread(settings) as clock:
        yield clock


def say(settings: Settings, *args: str) -> str:
    result = runner.invoke(app, ["--nats", settings.nats_url, *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_every_events_command_reads_well(
    settings: Settings, running_events: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "width", 200)  # a wide terminal: no wrapped cells
    created = say(
        settings, "events", "create", "--title", "Channel shift seminar", "--kind", "seminar",
        "--programme", "customer_service", "--starts", "2027-03-02 09:30", "--ends", "12:00",
        "--capacity", "1", "--venue", "Oldham Civic Centre", "--member-price", "free",
        "--non-member-price", "£75", "--per-organisation", "1",
    )  # fmt: skip
    assert "Channel shift seminar" in created and "Tue 02 Mar 2027 09:30–12:00" in created
    event_id = created.split("(")[1].split(")")[0]
    assert "is published" in say(settings, "events", "publish", event_id)
    first = say(settings, "book", event_id, "--name", "Ann Lee", "--email", "ann@oldham.example")
    assert "confirmed" in first and "£75.00" in first
    second = say(settings, "book", event_id, "--name", "Bo Chan", "--email", "bo@bury.example")
    assert "waitlisted, position 1" in second
    reference = first.split()[0]
    assert "Ann Lee" in say(settings, "bookings", "show", reference)
    assert "waiting #1" in say(settings, "bookings", "ls", event_id)
    assert "Changed: capacity" in say(settings, "events", "update", event_id, "--capacity", "2")
    assert "Channel shift seminar" in say(settings, "events", "ls")
    assert "2 of 2 taken" in say(settings, "events", "show", event_id)
    assert "BEGIN:VCALENDAR" in say(settings, "events", "feed", "--format", "ics")
    assert "<feed" in say(settings, "events", "feed", "--format", "atom")
    running_events.now = datetime(2027, 3, 2, 9, 0, tzinfo=running_events.now.tzinfo)
    assert "checked in" in say(settings, "checkin", reference)
    assert "organisations attending" in say(settings, "events", "report", event_id)
    second_ref = second.split()[0]
    running_events.now = datetime(2027, 3, 1, 9, 0, tzinfo=running_events.now.tzinfo)
    assert "is cancelled" in say(settings, "bookings", "cancel", second_ref)
    assert "1 bookings cancelled" in say(settings, "events", "cancel", event_id, "--reason", "Snow")
