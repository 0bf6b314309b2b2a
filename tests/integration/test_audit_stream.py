"""The audit stream (OPS): each action recorded once, with its effect, by whoever carried
it out, naming the staff member on the envelope or the NATS user the answer went to."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable
from datetime import date
from typing import Any

import nats
from nats.aio.client import Client

from contracts import Envelope
from contracts.envelope import Actor
from contracts.money import Money
from contracts.subscriptions_v1 import (
    ImportMembers,
    JoinMember,
    ListInvoices,
    RecordPayment,
    RunInvoicing,
    VoidInvoice,
)
from contracts.system_v1 import (
    RebuildRequest,
    ReplayRequest,
    Reply,
    rebuild_subject,
    replay_subject,
)
from kernel.audit import REQUEST_ID_HEADER
from kernel.audit_log import records
from kernel.commands import request, request_raw
from kernel.settings import Settings
from tests.conftest import Mailbox, eventually
from tests.stack import join, stack
from vestry.demo_invoicing import current_financial_year

JOINING = ("join_member", "import_members")
FIONA = Actor(id="s-1", name="Fiona Finance", address="192.0.2.7")


async def audit_log(nc: Client, count: int) -> list[dict[str, Any]]:
    """The OPS records once there are ``count``; a moment later, to show no more come.
    Joining the members a test starts from is recorded too (see
    test_joining_and_importing_members_are_recorded_without_addresses); the tests look
    at what follows."""
    js = nc.jetstream()

    async def after_joining() -> list[dict[str, Any]]:
        found = await records(js, limit=1000)
        return [row for row in found if row["action"] not in JOINING]

    async def enough() -> list[dict[str, Any]] | None:
        found = await after_joining()
        return found if len(found) >= count else None

    await eventually(enough, what=f"{count} records in OPS")
    await asyncio.sleep(0.5)  # a second record of anything would be in by now
    return await after_joining()


async def two_invoices(nc: Client) -> list[str]:
    """Two members billed for this financial year; their invoice numbers."""
    year = current_financial_year()
    for name in ("Wigan Council", "Bolton Council"):
        await request(
            nc,
            JoinMember(
                name=name,
                tier="district",
                billing_email=f"ap@{name.split()[0].lower()}.example.gov.uk",
                joined_on=date(year, 4, 1),
            ),
        )
    await request(nc, RunInvoicing(year=year))

    async def numbered() -> list[str] | None:
        found = (await request(nc, ListInvoices(year=year)))["invoices"]
        return [row["number"] for row in found] if len(found) == 2 else None

    return await eventually(numbered, what="the run's two invoices")


async def test_joining_and_importing_members_are_recorded_without_addresses(
    settings: Settings, nc: Client
) -> None:
    year = current_financial_year()

    def member(name: str) -> JoinMember:
        email = f"ap@{name.split()[0].lower()}.example.gov.uk"
        return JoinMember(
            name=name, tier="district", billing_email=email, joined_on=date(year, 4, 1)
        )

    async with stack(settings):
        joined = Envelope.wrap(member("Wigan Council"), actor=FIONA)
        first = await request_raw(nc, JoinMember.SUBJECT, joined.to_bytes())
        again = await request_raw(nc, JoinMember.SUBJECT, joined.to_bytes())  # a retry
        assert first.ok and again.ok and again.data == first.data
        imported = Envelope.wrap(
            ImportMembers(members=[member("Bolton Council"), member("Bury Council")]),
            actor=FIONA,
        )
        assert (await request_raw(nc, ImportMembers.SUBJECT, imported.to_bytes())).ok
        refused = ImportMembers(members=[member("Chorley Council"), member("Bury Council")])
        raw = Envelope.wrap(refused, actor=FIONA).to_bytes()
        assert not (await request_raw(nc, ImportMembers.SUBJECT, raw)).ok  # Bury is in
        js = nc.jetstream()
        log = await eventually(lambda: _at_least(records(js, limit=1000), 2), what="2 records")
        await asyncio.sleep(0.5)  # a second record of anything would be in by now
        log = await records(js, limit=1000)

    assert [(row["action"], row["target"], row["by"]) for row in log] == [
        ("join_member", "Wigan Council", "Fiona Finance"),
        ("import_members", "2 members", "Fiona Finance"),
    ]
    assert log[0]["filters"] == {"tier": "district", "joined_on": f"{year}-04-01"}
    assert log[0]["result"] == first.data
    assert log[1]["filters"] == {"members": ["Bolton Council", "Bury Council"]}
    assert log[1]["result"]["joined"] == 2
    assert "example.gov.uk" not in json.dumps(log)  # no address in an append-only stream


async def _at_least(
    found: Awaitable[list[dict[str, Any]]], count: int
) -> list[dict[str, Any]] | None:
    rows = await found
    return rows if len(rows) >= count else None


async def test_a_payment_and_a_void_by_a_staff_member_are_each_recorded_once_with_their_name(
    settings: Settings, nc: Client
) -> None:
    async with stack(settings):
        first, second = await two_invoices(nc)
        payment = Envelope.wrap(
            RecordPayment(
                invoice=first,
                amount=Money(amount_minor=100_000),
                received_on=date(current_financial_year(), 5, 3),
                reference="BACS 4471 from Jo Bloggs",
            ),
            actor=FIONA,
        )
        answered = await request_raw(nc, RecordPayment.SUBJECT, payment.to_bytes())
        # The same envelope again (a retry after a lost answer): the first answer, no effect.
        again = await request_raw(nc, RecordPayment.SUBJECT, payment.to_bytes())
        assert answered.ok and again == answered
        overpaid = Envelope.wrap(
            RecordPayment(
                invoice=first,
                amount=Money(amount_minor=500_000),
                received_on=date(current_financial_year(), 5, 4),
            ),
            actor=FIONA,
        )
        refused = await request_raw(nc, RecordPayment.SUBJECT, overpaid.to_bytes())
        assert not refused.ok and refused.error is not None
        voided = Envelope.wrap(VoidInvoice(invoice=second, reason="billed twice"), actor=FIONA)
        assert (await request_raw(nc, VoidInvoice.SUBJECT, voided.to_bytes())).ok
        paid_on = Envelope.wrap(VoidInvoice(invoice=first, reason="wrong"), actor=FIONA)
        assert not (await request_raw(nc, VoidInvoice.SUBJECT, paid_on.to_bytes())).ok

        log = await audit_log(nc, 3)

    assert [row["action"] for row in log] == ["run_invoicing", "record_payment", "void_invoice"]
    run, paid, void = log
    assert (run["by"], run["by_kind"], run["service"]) == (
        "development",
        "nats_user",
        "subscriptions",
    )
    assert not run["dry_run"] and run["result"]["status"]
    for row, target, envelope in ((paid, first, payment), (void, second, voided)):
        assert (row["by"], row["by_kind"], row["staff_id"], row["address"]) == (
            "Fiona Finance",
            "staff",
            "s-1",
            "192.0.2.7",
        )
        assert (row["via"], row["service"], row["target"]) == (
            "development",
            "subscriptions",
            target,
        )
        assert row["request_id"] == envelope.id
    assert paid["filters"]["amount"]["amount_minor"] == 100_000
    assert paid["result"]["outstanding"] == 100_000
    # Neither the bank reference nor the void's reason: they may name a person.
    assert "Bloggs" not in json.dumps(log) and "twice" not in json.dumps(log)


async def test_the_nats_user_is_the_one_whose_inbox_the_answer_goes_to(
    settings: Settings, nc: Client
) -> None:
    """Without users every reply is under _INBOX ("development"); a client replying under
    _INBOX_operator is recorded as the operator, the only user who could read it."""
    async with stack(settings):
        first, _ = await two_invoices(nc)
        operator = await nats.connect(settings.nats_url, inbox_prefix="_INBOX_operator")
        try:
            await request(
                operator,
                RunInvoicing(year=current_financial_year(), dry_run=True),
            )
            await request(
                operator,
                RecordPayment(
                    invoice=first,
                    amount=Money(amount_minor=1_000),
                    received_on=date(current_financial_year(), 6, 1),
                ),
            )
        finally:
            await operator.close()
        log = await audit_log(nc, 3)
    preview, paid = log[1:]
    assert (preview["action"], preview["dry_run"], preview["by"]) == (
        "run_invoicing",
        True,
        "operator",
    )
    assert preview["result"] == {"to_issue": 0, "already_billed": 2, "gross": 0}
    assert (paid["action"], paid["by"], paid["via"], paid["by_kind"]) == (
        "record_payment",
        "operator",
        "operator",
        "nats_user",
    )


async def test_replay_its_dry_run_and_a_rebuild_are_recorded_by_the_service_that_did_them(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    async with stack(settings):
        for number in range(2):
            await join(nc, number)
        await eventually(lambda: len(mailbox.mails()) == 2)

        async def ask(subject: str, body: bytes, request_id: str) -> Reply:
            msg = await nc.request(
                subject, body, timeout=30, headers={REQUEST_ID_HEADER: request_id}
            )
            return Reply.model_validate_json(msg.data)

        dry = ReplayRequest(stream="SUBSCRIPTIONS", dry_run=True).model_dump_json().encode()
        real = ReplayRequest(stream="SUBSCRIPTIONS", from_seq=1).model_dump_json().encode()
        assert (await ask(replay_subject("notifications"), dry, "dry-1")).ok
        assert (await ask(replay_subject("notifications"), real, "replay-1")).ok
        refused = await ask(replay_subject("events"), b'{"stream": "NOTIFICATIONS"}', "no-1")
        assert refused.error is not None and refused.error.code == "not_consumed"
        invalid = await ask(replay_subject("events"), b'{"stream": "EVENTS", "from_seq": 0}', "x")
        assert not invalid.ok
        rebuilt = await ask(
            rebuild_subject("events"), RebuildRequest().model_dump_json().encode(), "rb-1"
        )
        assert rebuilt.ok
        nothing = await ask(rebuild_subject("subscriptions"), b"{}", "rb-2")
        assert not nothing.ok
        # Refused or invalid requests, and the refused rebuild, recorded nothing.
        log = await audit_log(nc, 3)

    assert [(row["action"], row["service"], row["dry_run"]) for row in log] == [
        ("replay", "notifications", True),
        ("replay", "notifications", False),
        ("rebuild", "events", False),
    ]
    dry_row, replayed, rebuild = log
    assert [row["request_id"] for row in log] == ["dry-1", "replay-1", "rb-1"]
    assert all(row["by"] == "development" for row in log)
    assert dry_row["target"] == replayed["target"] == "SUBSCRIPTIONS"
    assert dry_row["result"]["by_type"] == {"MembershipStarted.v1": 2}
    assert replayed["filters"]["from_seq"] == 1 and replayed["result"]["skipped"] == 2
    assert rebuild["target"] == "events"
    assert rebuild["result"]["rows_after"] == {"membership_view": 2}


async def vestry(settings: Settings, *args: str) -> tuple[int, str, str]:
    """The CLI as its own process, while this event loop runs the services."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vestry",
        "--nats",
        settings.nats_url,
        "--json",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200", "VESTRY_DATA_DIR": str(settings.data_dir)},
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_the_cli_records_its_own_purge_and_erasure_and_audit_lists_them(
    settings: Settings, nc: Client
) -> None:
    async with stack(settings):
        code, out, err = await vestry(settings, "dlq", "purge", "--older-than", "0", "--yes")
        assert code == 0 and json.loads(out) == {"removed": 0}, out + err
        code, out, err = await vestry(
            settings, "people", "forget", "jo.bloggs@example.org", "--yes", "--timeout", "30"
        )
        assert code == 0, out + err
        erasure_id = json.loads(out)["erasure_id"]
        await audit_log(nc, 2)

        code, out, err = await vestry(settings, "audit")
        assert code == 0, out + err
        purge, forget = json.loads(out)
        code, out, _ = await vestry(settings, "audit", "--action", "forget", "--by", "DEVELOPMENT")
        only_forget = json.loads(out)
        code, out, _ = await vestry(settings, "audit", "--limit", "1")
        latest = json.loads(out)
        code, out, _ = await vestry(settings, "audit", "--by", "operator")
        nobody = json.loads(out)
        code, out, _ = await vestry(settings, "audit", "--since", "2999-01-01T00:00")
        future = json.loads(out)

    assert (purge["action"], purge["service"], purge["by"], purge["target"]) == (
        "purge",
        "cli",
        "development",
        "DLQ",
    )
    assert purge["filters"] == {"older_than_days": 0.0} and purge["result"] == {"removed": []}
    assert (forget["action"], forget["by"], forget["target"]) == (
        "forget",
        "development",
        erasure_id,
    )
    assert forget["result"]["key_deleted"] is True
    assert "jo.bloggs" not in json.dumps(forget)  # the record names no one
    assert only_forget == latest == [forget]
    assert nobody == future == []
