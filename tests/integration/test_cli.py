"""The `vestry` command's own behaviour: bad input, stores, contracts."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contracts.export import drift
from vestry.cli import app

runner = CliRunner()


def test_bad_member_input_is_refused_before_anything_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "VESTRY_NATS_URL", "nats://127.0.0.1:1"
    )  # nothing there: nothing may be sent
    result = runner.invoke(
        app,
        [
            "--json",
            "members",
            "add",
            "--name",
            "Bury Council",
            "--tier",
            "district",
            "--email",
            "accounts-at-bury",
        ],
    )
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "invalid" and error["field"] == "billing_email"


def test_unreachable_nats_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    result = runner.invoke(app, ["--nats", "nats://127.0.0.1:1", "status"])
    assert result.exit_code == 2
    assert "cannot reach NATS at nats://127.0.0.1:1" in result.stderr


def test_db_upgrade_migrates_each_store_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VESTRY_DATA_DIR", str(tmp_path))
    first = runner.invoke(app, ["db", "upgrade"])
    again = runner.invoke(app, ["db", "upgrade", "events"])
    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
    assert "events:" in again.output and "at revision" in again.output
    revision = again.output.split("at revision")[-1].strip()
    assert f"at revision {revision}" in " ".join(first.output.split())  # the same head, once
    for service, table in (
        ("subscriptions", "members"),
        ("events", "membership_view"),
        ("notifications", "deliveries"),
    ):
        with sqlite3.connect(tmp_path / f"{service}.sqlite3") as db:
            tables = {
                row[0] for row in db.execute("select name from sqlite_master where type='table'")
            }
            assert {"outbox", "inbox", table, "alembic_version"} <= tables
            assert db.execute("pragma journal_mode").fetchone()[0] == "wal"
    unknown = runner.invoke(app, ["db", "upgrade", "billing"])
    assert unknown.exit_code == 1 and "no service called 'billing'" in unknown.stderr


def test_contracts_export_writes_what_is_committed(tmp_path: Path) -> None:
    result = runner.invoke(app, ["contracts", "export", str(tmp_path)])
    assert result.exit_code == 0
    assert (tmp_path / "asyncapi.json").exists()
    assert json.loads((tmp_path / "asyncapi.json").read_text())["asyncapi"] == "3.0.0"
    assert drift(tmp_path) == []


def test_replay_into_a_service_that_is_not_running_does_nothing(nats_server) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(
        app, ["--nats", nats_server.url, "replay", "--stream", "SUBSCRIPTIONS", "--into", "events"]
    )
    assert result.exit_code == 2
    assert "events is not running: nothing was replayed" in result.stderr
    rebuild = runner.invoke(app, ["--nats", nats_server.url, "rebuild", "events"])
    assert rebuild.exit_code == 2 and "nothing was rebuilt" in rebuild.stderr
