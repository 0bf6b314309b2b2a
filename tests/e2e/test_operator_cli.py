"""The operator's commands against running services: streams, tail, replay, dlq, OPS."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from nats.aio.client import Client

from kernel.deadletter import read_dead_letters
from kernel.settings import Settings
from tests.conftest import Mailbox, eventually
from tests.stack import delivery_count, join, stack


async def vestry(settings: Settings, *args: str) -> tuple[int, str, str]:
    """Run the CLI as a separate process while this event loop keeps the services running."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vestry",
        "--nats",
        settings.nats_url,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200", "VESTRY_DATA_DIR": str(settings.data_dir)},
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode(), err.decode()


async def vestry_json(settings: Settings, *args: str) -> Any:
    code, out, err = await vestry(settings, "--json", *args)
    assert code == 0, err + out
    return json.loads(out)


async def test_an_operators_night(settings: Settings, nc: Client, mailbox: Mailbox) -> None:
    async with stack(settings) as (_, _events, notifications):
        for number in range(3):
            await join(nc, number)
        await eventually(lambda: len(mailbox.mails()) == 3)
        js = nc.jetstream()
        await js.publish("subscriptions.membership.started", b'{"type": "MembershipStarted"}')
        await eventually(lambda: _dead_letter_count(nc, 2), what="both consumers dead-letter it")

        streams = {row["name"]: row for row in await vestry_json(settings, "streams")}
        assert streams["SUBSCRIPTIONS"]["messages"] == 4
        assert {c["name"] for c in streams["SUBSCRIPTIONS"]["consumers"]} == {
            "events-subscriptions",
            "notifications-subscriptions",
        }

        code, out, _ = await vestry(settings, "--json", "tail", "subscriptions.>", "--no-follow")
        rows = [json.loads(line) for line in out.splitlines()]
        assert code == 0 and [row.get("type") for row in rows[:3]] == ["MembershipStarted v1"] * 3
        assert rows[3]["flag"] == "does not validate" and '"MembershipStarted"' in rows[3]["raw"]

        dry = await vestry_json(
            settings, "replay", "--stream", "SUBSCRIPTIONS", "--into", "notifications", "--dry-run"
        )
        assert dry["matched"] == 4 and dry["applied"] == 0
        assert dry["by_type"] == {"(not an envelope)": 1, "MembershipStarted.v1": 3}
        done = await vestry_json(
            settings,
            "replay",
            "--stream",
            "subscriptions",
            "--into",
            "notifications",
            "--from-seq",
            "1",
        )
        assert (done["applied"], done["skipped"], done["failed"]) == (0, 3, 1)
        assert len(mailbox.mails()) == 3 and await delivery_count(notifications) == 3

        code, _, err = await vestry(
            settings, "replay", "--stream", "NOTIFICATIONS", "--into", "events"
        )
        assert (
            code == 1
            and "events reads PEOPLE, SUBSCRIPTIONS, not NOTIFICATIONS (field: stream)" in err
        )
        code, _, err = await vestry(settings, "replay", "--stream", "EVENTS", "--into", "billing")
        assert code == 1 and "no service called 'billing'" in err
        code, _, err = await vestry(
            settings, "replay", "--stream", "X", "--into", "events", "--since", "yesterday"
        )
        assert code == 2 and "is not a time" in err

        rebuilt = await vestry_json(settings, "rebuild", "events")
        assert rebuilt["rows_before"] == rebuilt["rows_after"] == {"membership_view": 3}
        replayed = [(r["applied"], r["failed"]) for r in rebuilt["replayed"]]
        assert replayed == [(3, 1)]  # the malformed fact fails again, and goes to the DLQ again
        rebuilt = await vestry_json(settings, "rebuild", "notifications")
        assert rebuilt["rows_before"] == rebuilt["rows_after"] == {"directory": 3}
        assert len(mailbox.mails()) == 3  # nobody welcomed again
        code, _, err = await vestry(settings, "rebuild", "subscriptions")
        assert code == 1 and "keeps no read model" in err

        letters = await vestry_json(settings, "dlq", "ls")
        assert len(letters) == 5 and {row["kind"] for row in letters} == {"malformed"}
        shown = await vestry_json(settings, "dlq", "show", str(letters[0]["id"]))
        assert shown["stream"] == "SUBSCRIPTIONS" and shown["sequence"] == 4 and shown["message"]
        redriven = await vestry_json(settings, "dlq", "redrive", "--all")
        assert sum(report["failed"] for report in redriven) == 5  # still malformed: back in the DLQ
        assert len(await read_dead_letters(js)) == 5

        code, _, err = await vestry(settings, "dlq", "purge", "--older-than", "0")
        assert code == 1 and "--yes" in err and len(await read_dead_letters(js)) == 5
        purged = await vestry_json(settings, "dlq", "purge", "--older-than", "0", "--yes")
        assert purged == {"removed": 5} and await read_dead_letters(js) == []

        # Each action that took effect is in OPS once, recorded by whoever carried it out
        # (the refused replays and rebuild are not), as the NATS user: none here.
        audit = await vestry_json(settings, "audit")
    assert sorted((row["action"], row["service"], row["dry_run"]) for row in audit) == [
        *[("join_member", "subscriptions", False)] * 3,  # the members the test starts from
        ("purge", "cli", False),
        ("rebuild", "events", False),
        ("rebuild", "notifications", False),
        ("redrive", "events", False),
        ("redrive", "notifications", False),
        ("replay", "notifications", False),
        ("replay", "notifications", True),
    ]
    assert all(row["by"] == "development" for row in audit)
    replayed = next(row for row in audit if row["action"] == "replay" and not row["dry_run"])
    assert replayed["target"] == "SUBSCRIPTIONS" and replayed["result"]["skipped"] == 3


async def _dead_letter_count(nc: Client, expected: int) -> bool:
    return len(await read_dead_letters(nc.jetstream())) == expected
