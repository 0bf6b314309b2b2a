"""`vestry dev` as an operator runs it: it starts, reports healthy, carries a member's
welcome to the mailbox, and SIGTERM leaves no process behind. It brings back what
dies, NATS and the SMTP capture included, a few times a minute at most."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from vestry.devstack import DevStack
from vestry.mailcapture import read_mailbox
from vestry.natsserver import free_port


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


def test_dev_stack_starts_serves_and_stops_without_leaving_processes(tmp_path: Path) -> None:
    nats_port, web_port = free_port(), free_port()
    env = {
        **os.environ,
        "VESTRY_DATA_DIR": str(tmp_path / "var"),
        "VESTRY_NATS_URL": f"nats://127.0.0.1:{nats_port}",
        "COLUMNS": "200",
    }
    dev = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vestry",
            "dev",
            "--nats-port",
            str(nats_port),
            "--smtp-port",
            str(free_port()),
            "--monitor-port",
            str(free_port()),
            "--web-port",
            str(web_port),
            "--pay-port",
            "0",
        ],
        env=env,
        stdout=(tmp_path / "dev.out").open("w"),  # a pipe unread till the end could fill
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        status = vestry("--json", "status", "--wait", "60", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        report = json.loads(status.stdout)
        assert report["healthy"] is True
        assert {s["name"]: s["up"] for s in report["services"]} == {
            "subscriptions": True,
            "events": True,
            "notifications": True,
            "web": True,
        }
        assert {"SUBSCRIPTIONS", "EVENTS", "NOTIFICATIONS", "DLQ"} <= {
            s["name"] for s in report["streams"]
        }

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
        assert "Wigan Council joined" in joined.stdout
        refused = vestry(
            "members",
            "add",
            "--name",
            "Wigan  council",
            "--tier",
            "district",
            "--email",
            "ap@wigan.example.gov.uk",
            env=env,
        )
        assert refused.returncode == 1 and "already a member" in refused.stderr

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not read_mailbox(tmp_path / "var" / "mail"):
            time.sleep(0.2)
        mails = read_mailbox(tmp_path / "var" / "mail")
        assert [m.to for m in mails] == ["ap@wigan.example.gov.uk"]
        site = f"http://127.0.0.1:{web_port}"
        with urllib.request.urlopen(f"{site}/events", timeout=10) as programme:
            assert programme.status == 200 and "Events and courses" in programme.read().decode()
        page = f"{site}/unsubscribe?c=x&t=warp&s=forged"
        with pytest.raises(urllib.error.HTTPError) as refused_link:  # the site answers links
            urllib.request.urlopen(page, timeout=10)
        assert refused_link.value.code == 400

        parts = (
            "nats-server",
            "vestry.mailcapture",
            "vestry.paystandin",
            "services.subscriptions",
            "services.events",
            "services.notifications",
            "services.web",
        )
        # A part that lost its port to another process at start is restarted by the
        # supervisor; give it that moment rather than catch it between two lives.
        deadline = time.monotonic() + 20
        while True:
            children = psutil.Process(dev.pid).children(recursive=True)
            names = " ".join(_command_line(child) for child in children)
            missing = [part for part in parts if part not in names]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert missing == [], (tmp_path / "dev.out").read_text()
    finally:
        dev.send_signal(signal.SIGTERM)
        dev.wait(timeout=30)
        output = (tmp_path / "dev.out").read_text()

    assert dev.returncode == 0, output
    assert "stopped." in output
    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == [], f"left running: {[p.pid for p in alive]}"
    after = vestry("status", env=env, timeout=30)
    assert after.returncode == 2 and "cannot reach NATS" in after.stderr


def _part(dev: subprocess.Popen[str], marker: str) -> psutil.Process | None:
    """The child of `vestry dev` whose command line holds ``marker``, if one runs."""
    for child in psutil.Process(dev.pid).children(recursive=True):
        try:
            if marker in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def test_dev_stack_brings_back_nats_and_the_smtp_capture(tmp_path: Path) -> None:
    nats_port = free_port()
    env = {
        **os.environ,
        "VESTRY_DATA_DIR": str(tmp_path / "var"),
        "VESTRY_NATS_URL": f"nats://127.0.0.1:{nats_port}",
        "VESTRY_ENV": "production",  # `vestry dev` stays development whatever the shell says
        "COLUMNS": "200",
    }
    dev = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vestry",
            "dev",
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
        stdout=(tmp_path / "dev.out").open("w"),  # a pipe unread till the end could fill
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        status = vestry("--json", "status", "--wait", "60", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        killed = {}
        for marker in ("vestry.mailcapture", "nats-server"):
            part = _part(dev, marker)
            assert part is not None, f"no {marker} under vestry dev"
            killed[marker] = part.pid
            part.kill()
        # Brought back at the next supervision round; a loaded machine may take a while.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            back = {marker: _part(dev, marker) for marker in killed}
            if all(p is not None and p.pid != killed[m] for m, p in back.items()):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"not brought back within 60 s: {back}")

        status = vestry("--json", "status", "--wait", "60", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert json.loads(status.stdout)["healthy"] is True
        joined = vestry(
            "members",
            "add",
            "--name",
            "Bolton Council",
            "--tier",
            "district",
            "--email",
            "ap@bolton.example.gov.uk",
            env=env,
        )
        assert joined.returncode == 0, joined.stderr
        deadline = time.monotonic() + 60  # through the new NATS to the new SMTP capture
        while time.monotonic() < deadline and not read_mailbox(tmp_path / "var" / "mail"):
            time.sleep(0.2)
        assert [m.to for m in read_mailbox(tmp_path / "var" / "mail")] == [
            "ap@bolton.example.gov.uk"
        ]
    finally:
        dev.send_signal(signal.SIGTERM)
        dev.wait(timeout=30)
        output = (tmp_path / "dev.out").read_text()
    assert dev.returncode == 0, output
    assert "smtp exited with code -9; restarting" in output
    assert "nats-server exited with code -9; restarting" in output


def test_dev_stack_restarts_a_part_at_most_five_times_a_minute(tmp_path: Path) -> None:
    said: list[str] = []
    stack = DevStack(data_dir=tmp_path, say=said.append)
    assert [stack._may_restart("smtp", 1) for _ in range(7)] == [True] * 5 + [False] * 2
    assert stack._may_restart("events", 1)  # each part counts for itself
    assert len(said) == 7 and "smtp exited with code 1 5 times within a minute" in said[5]
    stack.restarts["smtp"] = [time.monotonic() - 61] * 5  # a minute later
    assert stack._may_restart("smtp", 1)


def _command_line(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # it ended while we looked
        return ""
