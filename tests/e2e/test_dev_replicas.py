"""`vestry dev --replicas 2`: two processes of each service on one store (SQLite files,
or PostgreSQL from pip with `--store postgres`), every one answering `vestry status`,
and one killed is brought back while its twin goes on."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from vestry.mailcapture import read_mailbox
from vestry.natsserver import free_port

SERVICES = ("subscriptions", "events", "notifications")


def vestry(
    *args: str, env: dict[str, str], timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vestry", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def replica_pids(env: dict[str, str]) -> dict[str, list[int]]:
    """The pids that answered health, by service, as `vestry status --json` lists them."""
    status = vestry("--json", "status", env=env, timeout=30)
    if status.returncode not in (0, 1):
        return {}
    report: dict[str, Any] = json.loads(status.stdout)
    return {s["name"]: [r["pid"] for r in s["replicas"]] for s in report["services"]}


def wait_for_replicas(env: dict[str, str], expected: dict[str, int], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    seen: dict[str, list[int]] = {}
    while time.monotonic() < deadline:
        seen = replica_pids(env)
        if all(len(seen.get(name, [])) == count for name, count in expected.items()):
            return seen
        time.sleep(0.5)
    pytest.fail(f"not {expected} replicas answering within {timeout:.0f} s: {seen}")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A directory of its own, not under pytest's temp root: as root, PostgreSQL runs as
    another user, and a pytest session starting meanwhile makes that root 0700 again."""
    home = Path(tempfile.mkdtemp(prefix="vestry-dev-replicas-"))
    try:
        yield home / "var"
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_two_replicas_of_each_service_answer_and_one_killed_is_brought_back(
    data_dir: Path, store: str
) -> None:
    nats_port = free_port()
    env = {
        **os.environ,
        "VESTRY_DATA_DIR": str(data_dir),
        "VESTRY_NATS_URL": f"nats://127.0.0.1:{nats_port}",
        "COLUMNS": "200",
    }
    dev = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vestry",
            "dev",
            "--replicas",
            "2",
            "--store",
            store,
            "--nats-port",
            str(nats_port),
            "--smtp-port",
            str(free_port()),
            "--monitor-port",
            str(free_port()),
            "--web-port",
            "0",
            "--pay-port",
            "0",
        ],
        env=env,
        stdout=(data_dir.parent / "dev.out").open("w"),  # a pipe unread till the end could fill
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        before = wait_for_replicas(env, {**dict.fromkeys(SERVICES, 2), "web": 1})
        processes = {
            name: [
                p for p in psutil.Process(dev.pid).children() if f"services.{name}" in p.cmdline()
            ]
            for name in SERVICES
        }
        for name in SERVICES:  # what answered is what `vestry dev` runs
            assert sorted(p.pid for p in processes[name]) == before[name]
        report = json.loads(vestry("--json", "status", env=env).stdout)
        stores = {s["name"]: {r["store"] for r in s["replicas"]} for s in report["services"]}
        scheme = "sqlite+aiosqlite" if store == "sqlite" else "postgresql+asyncpg"
        for name in SERVICES:  # both replicas of a service on its one store
            (url,) = stores[name]
            assert url.startswith(f"{scheme}:") and name in url

        killed = processes["events"][1]
        killed.kill()
        after = wait_for_replicas(env, dict.fromkeys(SERVICES, 2))
        assert killed.pid not in after["events"]
        assert processes["events"][0].pid in after["events"]  # its twin went on

        # The stack works through the replicas: a member's welcome reaches the mailbox once.
        joined = vestry(
            "members",
            "add",
            "--name",
            "Wigan Council",
            "--tier",
            "district",
            "--email",
            "ap@wigan.example.gov.uk",
            env=env,
        )
        assert joined.returncode == 0, joined.stderr
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not read_mailbox(data_dir / "mail"):
            time.sleep(0.2)
        time.sleep(1)  # long enough for a second replica's copy, were there one
        assert [m.to for m in read_mailbox(data_dir / "mail")] == ["ap@wigan.example.gov.uk"]
    finally:
        dev.send_signal(signal.SIGTERM)
        dev.wait(timeout=60)
        output = (data_dir.parent / "dev.out").read_text()
    assert dev.returncode == 0, output
    assert re.search(r"events-[12] exited with code -9; restarting", " ".join(output.split()))
