"""`vestry contacts`, `broadcast`, `templates` and `sms ls` as an alerts officer types them."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kernel.settings import Settings
from services.notifications.app import create_service
from tests.conftest import Mailbox
from tests.notifications_support import quick
from vestry.cli import app

runner = CliRunner()


@pytest.fixture
def running_notifications(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """The notifications service in its own thread and loop, as a separate process would be."""
    settings = quick(settings)
    monkeypatch.setenv("VESTRY_DATA_DIR", str(settings.data_dir))  # where `vestry sms ls` looks
    ready, stop = threading.Event(), None
    loop = asyncio.new_event_loop()

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        async with create_service(settings).running():
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30), "the notifications service did not start"
    yield settings
    loop.call_soon_threadsafe(stop.set)  # type: ignore[union-attr]
    thread.join(30)


def vestry(settings: Settings, *args: str, ok: bool = True) -> Any:
    result = runner.invoke(app, ["--nats", settings.nats_url, "--json", *args])
    assert (result.exit_code == 0) is ok, result.output
    return json.loads(result.stdout)


def test_an_officer_adds_contacts_and_broadcasts_an_advisory(
    running_notifications: Settings, mailbox: Mailbox, tmp_path: Path
) -> None:
    settings = running_notifications
    refused = vestry(
        settings,
        "contacts",
        "add",
        "--email",
        "a@bury.example.gov.uk",
        "--mobile",
        "12345",
        ok=False,
    )
    assert refused["error"]["field"] == "mobile"
    vestry(
        settings, "contacts", "add", "--email", "a@bury.example.gov.uk", "--name", "Amy Ash",
        "--mobile", "07400 111222", "--sms", "--topics", "warp",
    )  # fmt: skip
    vestry(
        settings, "contacts", "add", "--email", "b@wyre.example.gov.uk", "--mobile", "07400 333444"
    )
    vestry(
        settings, "contacts", "subscribe", "b@wyre.example.gov.uk", "--topics", "warp,newsletter"
    )
    listed = vestry(settings, "contacts", "ls", "--topic", "warp")
    assert [c["email"] for c in listed] == ["a@bury.example.gov.uk", "b@wyre.example.gov.uk"]
    unknown = vestry(
        settings, "contacts", "subscribe", "b@wyre.example.gov.uk", "--topics", "warpp", ok=False
    )
    assert unknown["error"]["code"] == "not_found"

    data = tmp_path / "advisory.json"
    data.write_text(
        json.dumps({"reference": "WARP-7", "severity": "medium", "title": "Patch the VPN"})
    )
    missing = vestry(
        settings, "broadcast", "--topic", "warp", "--channels", "email,sms",
        "--template", "security_advisory", "--data", str(data), ok=False,
    )  # fmt: skip
    assert missing["error"]["field"] == "data" and "summary" in missing["error"]["message"]
    data.write_text(
        json.dumps(
            {
                "reference": "WARP-7",
                "severity": "medium",
                "title": "Patch the VPN appliance",
                "summary": "A flaw lets anyone on the internet read its sessions.",
                "action": "Apply the vendor's update today.",
            }
        )
    )
    result = vestry(
        settings, "broadcast", "--topic", "warp", "--channels", "email,sms",
        "--template", "security_advisory", "--data", str(data),
    )  # fmt: skip
    assert (result["sent"], result["failed"], result["skipped_for_consent"]) == (3, 0, 1)
    assert sorted(m.to for m in mailbox.mails()) == [
        "a@bury.example.gov.uk",
        "b@wyre.example.gov.uk",
    ]
    (sms,) = vestry(settings, "sms", "ls")
    assert sms["to"] == "+447400111222" and sms["segments"] <= 2

    shown = vestry(settings, "contacts", "show", "a@bury.example.gov.uk")
    assert {d["channel"] for d in shown["deliveries"]} == {"email", "sms"}
    sent_id = shown["deliveries"][0]["delivery_id"]
    not_failed = vestry(settings, "resend", sent_id, ok=False)
    assert not_failed["error"]["code"] == "conflict" and "sent" in not_failed["error"]["message"]
    assert vestry(settings, "contacts", "forget", "a@bury.example.gov.uk", "--yes")["forgotten"]
    assert (
        vestry(settings, "contacts", "show", "a@bury.example.gov.uk", ok=False)["error"]["code"]
        == "not_found"
    )


def test_templates_preview_renders_samples_and_counts_segments(settings: Settings) -> None:
    listed = vestry(settings, "templates", "ls")
    assert {"booking_confirmed", "security_advisory", "invoice_overdue"} <= {
        t["template"] for t in listed
    }
    sms = vestry(settings, "templates", "preview", "reminder", "--channel", "sms")
    assert sms["within_limit"] and sms["encoding"] == "GSM-7"
    email = vestry(settings, "templates", "preview", "invoice_issued")
    assert email["subject"].startswith("Invoice INV-000017") and "<table>" in email["html"]
    assert (
        vestry(settings, "templates", "preview", "invoice_issued", "--channel", "sms", ok=False)[
            "error"
        ]["field"]
        == "channels"
    )
