"""`vestry demo` on a fresh data directory: the three jobs end to end, then nothing left running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from vestry.devstack import port_in_use
from vestry.mailcapture import read_mailbox
from vestry.natsserver import free_port


def test_demo_runs_the_three_jobs_and_a_replay_that_sends_nothing(tmp_path: Path) -> None:
    nats_port, smtp_port, monitor_port, web_port = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    )
    env = {
        **os.environ,
        "VESTRY_DATA_DIR": str(tmp_path / "var"),
        "VESTRY_NATS_URL": f"nats://127.0.0.1:{nats_port}",
        "VESTRY_SMTP_PORT": str(smtp_port),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vestry",
            "--json",
            "demo",
            "--monitor-port",
            str(monitor_port),
            "--web-port",
            str(web_port),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)

    assert summary["members"] == {"joined": 45, "already": 0, "refused": []}
    invoicing = summary["invoicing"]
    assert (invoicing["issued"], invoicing["invoices_for_year"]) == (45, 45)
    assert invoicing["total_billed_pence"] == 23_050_000
    rush = summary["events"]["rush"]
    assert rush["confirmed"] + rush["waitlisted"] == rush["requests"] and rush["waitlisted"] > 0
    assert summary["events"]["cancellation"]["promoted"]
    replay = summary["replay"]
    assert replay["applied"] == replay["failed"] == 0
    assert replay["skipped"] == replay["matched"] >= 45  # every fact it reads, already handled
    assert replay["streams"] == ["EVENTS", "SUBSCRIPTIONS"]
    assert replay["new_mail"] == replay["new_sms"] == 0
    broadcast = summary["broadcast"]
    assert broadcast["completed"] and broadcast["sent"] > 0 and broadcast["failed"] == 0
    assert summary["sms_captured"] > 0
    assert summary["dead_letters"] == 0
    assert len(read_mailbox(tmp_path / "var" / "mail")) == summary["mail_captured"] >= 45
    assert not any(port_in_use(port) for port in (nats_port, smtp_port, monitor_port, web_port))
    assert "Open the site: run `make dev`" in result.stderr
    assert f"http://127.0.0.1:{web_port}/events" in result.stderr
