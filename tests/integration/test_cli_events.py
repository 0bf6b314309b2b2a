"""`vestry events`, `book`, `bookings` and `checkin` as an officer types them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from icalendar import Calendar
from typer.testing import CliRunner

from kernel.settings import Settings
from tests.events_support import Clock, events_in_thread
from vestry.cli import app

runner = CliRunner()


@pytest.fixture
def running_events(settings: Settings) -> Iterator[Clock]:
    with events_in_thread(settings) as clock:
        yield clock


def vestry(settings: Settings, *args: str) -> Any:
    result = runner.invoke(app, ["--nats", settings.nats_url, "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_an_officer_creates_publishes_and_people_book_track_cancel_and_check_in(
    settings: Settings, running_events: Clock, tmp_path: Path
) -> None:
    event = vestry(
        settings, "events", "create", "--title", "Information governance forum",
        "--programme", "information_sharing_and_security", "--kind", "forum",
        "--starts", "2027-06-10 10:00", "--ends", "12:30", "--capacity", "1",
        "--venue", "Preston Guild Hall", "--non-member-price", "45.50",
    )  # fmt: skip
    assert event["starts_at"] == "2027-06-10T09:00:00+00:00"  # 10:00 BST
    assert (event["status"], event["non_member_price_minor"]) == ("draft", 4550)
    event_id = event["event_id"]
    vestry(settings, "events", "publish", event_id)

    first = vestry(
        settings, "book", event_id, "--name", "Asha Patel", "--email", "asha@preston.example",
        "--phone", "07400 123456", "--sms", "--org-name", "Preston City Council",
    )  # fmt: skip
    second = vestry(
        settings, "book", event_id, "--name", "Tom Reed", "--email", "tom@wyre.example",
        "--channel", "phone",
    )  # fmt: skip
    assert (first["status"], first["phone"], first["price"]) == (
        "confirmed",
        "+447400123456",
        "£45.50",
    )
    assert (second["status"], second["position"]) == ("waitlisted", 1)

    shown = vestry(settings, "events", "show", event_id)
    assert (shown["places_left"], shown["waiting"]) == (0, 1)
    cancelled = vestry(settings, "bookings", "cancel", first["reference"])
    assert cancelled["promoted"] == [second["reference"]]
    assert vestry(settings, "bookings", "show", second["reference"])["status"] == "confirmed"
    assert [b["reference"] for b in vestry(settings, "bookings", "ls", event_id)] == [
        first["reference"],
        second["reference"],
    ]

    feed = tmp_path / "events.ics"
    vestry(settings, "events", "feed", "--format", "ics", "--output", str(feed))
    (vevent,) = Calendar.from_ical(feed.read_bytes()).walk("VEVENT")
    assert str(vevent["SUMMARY"]) == "Information governance forum"

    running_events.now = event_start(event)
    assert vestry(settings, "checkin", second["reference"])["attendance"] == "attended"
    report = vestry(settings, "events", "report", event_id)
    assert (report["booked"], report["attended"], report["by_channel"]) == (1, 1, {"phone": 1})


def event_start(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["starts_at"])


def test_a_refusal_reads_as_a_structured_error(settings: Settings, running_events: Clock) -> None:
    result = runner.invoke(
        app,
        [
            "--nats",
            settings.nats_url,
            "--json",
            "book",
            "E-NONE",
            "--name",
            "A",
            "--email",
            "a@b.example",
        ],
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"] == {
        "code": "not_found",
        "message": "no event has the id 'E-NONE'",
        "field": "event_id",
    }
    plain = runner.invoke(app, ["--nats", settings.nats_url, "bookings", "show", "BNOPE123"])
    assert plain.exit_code == 1 and "no booking has the reference 'BNOPE123'" in plain.stderr


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["book", "E1", "--name", "A", "--email", "not-an-email"], "email"),
        (["book", "E1", "--name", "A", "--email", "a@b.example", "--channel", "fax"], "channel"),
        (
            [
                "book",
                "E1",
                "--name",
                "A",
                "--email",
                "a@b.example",
                "--org",
                "m1",
                "--org-name",
                "X",
            ],
            "org",
        ),
        (
            [
                "events",
                "create",
                "--title",
                "Forum",
                "--starts",
                "next tuesday",
                "--ends",
                "12:00",
                "--capacity",
                "5",
            ],
            "starts_at",
        ),
        (
            [
                "events",
                "create",
                "--title",
                "Forum",
                "--starts",
                "2027-06-10 10:00",
                "--ends",
                "12:00",
                "--capacity",
                "5",
                "--member-price",
                "lots",
            ],
            "member_price",
        ),
        (
            [
                "events",
                "create",
                "--title",
                "Forum",
                "--starts",
                "2027-06-10 10:00",
                "--ends",
                "12:00",
                "--capacity",
                "0",
            ],
            "capacity",
        ),
    ],
)
def test_bad_input_is_refused_before_anything_is_sent(
    monkeypatch: pytest.MonkeyPatch, args: list[str], field: str
) -> None:
    result = runner.invoke(app, ["--nats", "nats://127.0.0.1:1", "--json", *args])  # nothing there
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["error"]["field"] == field
