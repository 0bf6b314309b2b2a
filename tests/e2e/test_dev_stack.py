"""`vestry dev` as an operator runs it: it starts, reports healthy, carries a member's
welcome to the mailbox, and SIGTERM leaves no process behind."""

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
        ],
        env=env,
        stdout=subprocess.PIPE,
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

        children = psutil.Process(dev.pid).children(recursive=True)
        names = " ".join(" ".join(child.cmdline()) for child in children)
        for part in (
            "nats-server",
            "vestry.mailcapture",
            "services.subscriptions",
            "services.events",
            "services.notifications",
            "services.web",
        ):
            assert part in names
    finally:
        dev.send_signal(signal.SIGTERM)
        output, _ = dev.communicate(timeout=30)

    assert dev.returncode == 0, output
    assert "stopped." in output
    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == [], f"left running: {[p.pid for p in alive]}"
    after = vestry("status", env=env, timeout=30)
    assert after.returncode == 2 and "cannot reach NATS" in after.stderr
