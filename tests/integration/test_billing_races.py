"""The year's invoicing under concurrency, with two and three replicas of subscriptions
on one store (SQLite, and PostgreSQL where transactions really overlap): tier changes
racing a run bill each member once at the right tiers, and a run asked for on every
replica at once is one run, numbering each invoice once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from nats.aio.client import Client
from sqlalchemy import select

from contracts import Envelope, Message
from contracts.subscriptions_v1 import (
    ChangeTier,
    InvoiceIssued,
    InvoiceOverdue,
    InvoiceRunStatus,
    JoinMember,
    RunInvoicing,
    ShowInvoice,
)
from contracts.system_v1 import Reply
from kernel.commands import CommandFailed, request, request_raw
from kernel.runtime import Service
from kernel.settings import Settings
from services.subscriptions.app import create_service
from services.subscriptions.domain.billing import REMINDER_STAGES
from services.subscriptions.store import Invoice, InvoiceRun, Reminder
from tests.conftest import eventually
from tests.events_support import requests_answered
from tests.notifications_support import stream_facts
from tests.stack import outbox_drained
from tests.subscriptions_helpers import billing_settings, wait_for_run

BILLED_AT = datetime(2008, 4, 1, 10, tzinfo=UTC)
RUN_DAY = date(2008, 4, 1)
CHANGE_DAY = date(2008, 10, 1)  # six months district, six months upper-tier
DISTRICT_YEAR = 200_000  # £2,000.00 for 2008, no VAT
SIX_AND_SIX = 100_000 + 450_000  # £1,000.00 district + £4,500.00 upper-tier


@pytest.fixture
def store_services() -> tuple[str, ...]:
    """Only the subscriptions store goes on PostgreSQL in ``store_settings``."""
    return ("subscriptions",)


@asynccontextmanager
async def replicas(
    settings: Settings, nc: Client, count: int, **billing: Any
) -> AsyncIterator[list[Service]]:
    """``count`` subscriptions services on one store, each with its own runner, answering
    one queue group; their clock on the day the runs are dated."""
    async with AsyncExitStack() as stack:
        services = [
            await stack.enter_async_context(
                create_service(
                    settings, billing=billing_settings(**billing), clock=lambda: BILLED_AT
                ).running()
            )
            for _ in range(count)
        ]

        async def all_answered() -> bool:
            with contextlib.suppress(CommandFailed):
                await request(nc, ShowInvoice(number="INV-999999"))
            return all(requests_answered(s, ShowInvoice.SUBJECT) for s in services)

        await eventually(all_answered, timeout=20, interval=0.01, what="every replica answering")
        yield services


async def join_district_councils(nc: Client, count: int) -> list[str]:
    names = [f"District Council {n:02d}" for n in range(count)]
    for n, name in enumerate(names):
        await request(
            nc,
            JoinMember(
                name=name,
                tier="district",
                billing_email=f"finance{n:02d}@district.example.gov.uk",
                joined_on=RUN_DAY,
            ),
        )
    return names


async def attempt(nc: Client, command: Message) -> Reply:
    """Send a command and return its reply, accepted or refused."""
    return await request_raw(nc, command.SUBJECT, Envelope.wrap(command).to_bytes(), timeout=30)


async def documents_of_2008(service: Service) -> list[Invoice]:
    async with service.sessions() as session:
        return list(await session.scalars(select(Invoice).where(Invoice.year == 2008)))


def numbered_once_without_gaps(documents: list[Invoice], series: str) -> None:
    numbers = sorted(d.number for d in documents if d.series == series)
    assert numbers == list(range(1, len(numbers) + 1)), numbers


@pytest.mark.slow
@pytest.mark.parametrize("replica_count", [2, 3])
async def test_tier_changes_racing_the_run_bill_each_member_once_at_its_tiers(
    store_settings: Settings, nc: Client, replica_count: int
) -> None:
    """Thirty district councils move to upper-tier from 1 October while the year's run
    bills them, three to a chunk. Whichever came first for each member, it owes six
    months at each tier (£5,500.00): one invoice with both, or the district year and
    then a credit note and an invoice for the six months that changed."""
    async with replicas(
        store_settings, nc, replica_count, invoice_run_chunk=3, invoice_run_pause_s=0.005
    ) as services:
        names = await join_district_councils(nc, 30)
        started = await request(nc, RunInvoicing(year=2008, issued_on=RUN_DAY))

        async def change(n: int, name: str) -> Reply:
            await asyncio.sleep(n * 0.004)  # spread over the run's chunks
            return await attempt(
                nc, ChangeTier(member=name, tier="upper-tier", effective_on=CHANGE_DAY)
            )

        changed = await asyncio.gather(*(change(n, name) for n, name in enumerate(names)))
        run = await wait_for_run(nc, started["run_id"])

        assert all(reply.ok for reply in changed), [r.error for r in changed if not r.ok]
        assert (run["status"], run["issued"]) == ("completed", 30 - run["already_billed"])
        documents = await documents_of_2008(services[0])
        owed: Counter[str] = Counter()
        recurring: Counter[str] = Counter()
        for document in documents:
            sign = 1 if document.kind == "invoice" else -1
            owed[document.billed_name] += sign * document.gross_pence
            if document.purpose == "recurring" and document.status != "void":
                recurring[document.billed_name] += 1
        assert owed == dict.fromkeys(names, SIX_AND_SIX)
        assert recurring == dict.fromkeys(names, 1)
        numbered_once_without_gaps(documents, "INV")
        numbered_once_without_gaps(documents, "CN")

        await eventually(lambda: outbox_drained(services[0]), what="the outbox drained")
        issued = await issued_facts(nc)
        invoices = {d.display_number for d in documents if d.kind == "invoice"}
        assert sorted(issued) == sorted(invoices)  # one InvoiceIssued each


async def issued_facts(nc: Client) -> list[str]:
    js = nc.jetstream()
    info = await js.stream_info("SUBSCRIPTIONS")
    numbers = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg("SUBSCRIPTIONS", seq)
        if msg.subject == InvoiceIssued.SUBJECT:
            numbers.append(Envelope.from_bytes(msg.data).data["number"])
    return numbers


@pytest.mark.slow
@pytest.mark.parametrize("replica_count", [2, 3])
async def test_a_run_asked_for_on_every_replica_at_once_is_one_run(
    store_settings: Settings, nc: Client, replica_count: int
) -> None:
    """Twenty-four requests for the year's run at once, spread over the replicas: one is
    accepted and the others are told it is going; it bills every member once, numbered
    1 to 40, and is the year's only run."""
    # Two members a chunk and a pause between: the run outlasts the requests, so each
    # of them finds it going (a request after it ended would rightly start another).
    async with replicas(
        store_settings, nc, replica_count, invoice_run_chunk=2, invoice_run_pause_s=0.05
    ) as services:
        await join_district_councils(nc, 40)
        before = [requests_answered(s, RunInvoicing.SUBJECT) for s in services]

        replies = await asyncio.gather(
            *(attempt(nc, RunInvoicing(year=2008, issued_on=RUN_DAY)) for _ in range(24))
        )

        spread = [
            requests_answered(s, RunInvoicing.SUBJECT) - b
            for s, b in zip(services, before, strict=True)
        ]
        assert sum(spread) == 24 and all(spread), spread  # every replica was asked
        accepted = [reply for reply in replies if reply.ok]
        refused = [reply.error for reply in replies if not reply.ok]
        assert len(accepted) == 1, replies
        assert {(e.code, e.field) for e in refused if e} == {("busy", "year")}
        assert accepted[0].data is not None
        run = await wait_for_run(nc, accepted[0].data["run_id"])
        assert (run["status"], run["issued"], run["error"]) == ("completed", 40, None)

        runs = (await request(nc, InvoiceRunStatus(year=2008)))["runs"]
        assert [r["run_id"] for r in runs] == [run["run_id"]]
        documents = await documents_of_2008(services[0])
        assert len(documents) == 40
        assert {d.gross_pence for d in documents} == {DISTRICT_YEAR}
        assert {d.run_id for d in documents} == {run["run_id"]}
        assert len({d.membership_id for d in documents}) == 40
        numbered_once_without_gaps(documents, "INV")
        async with services[0].sessions() as session:
            owners = set(await session.scalars(select(InvoiceRun.owner)))
        assert len(owners) == 1  # one runner took it, and kept it


@pytest.mark.parametrize("replica_count", [2, 3])
async def test_replicas_sweeping_at_the_same_moment_send_each_reminder_once_quietly(
    store_settings: Settings, nc: Client, replica_count: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Every replica runs the daily overdue sweep; on one day they may all start it at
    once. Each stage of each invoice is sent once, and the replicas that find the work
    done say nothing is wrong."""
    async with replicas(store_settings, nc, replica_count) as services:
        await join_district_councils(nc, 12)
        started = await request(nc, RunInvoicing(year=2008, issued_on=RUN_DAY))
        await wait_for_run(nc, started["run_id"])
        (due_on,) = {invoice.due_on for invoice in await documents_of_2008(services[0])}
        assert due_on is not None
        caplog.set_level(logging.WARNING)
        for stage, days in REMINDER_STAGES:
            sweeping_at = datetime.combine(due_on + timedelta(days=days), time(12), tzinfo=UTC)
            for service in services:
                automation = service.automation  # type: ignore[attr-defined]
                automation.clock = lambda at=sweeping_at: at
            swept = await asyncio.gather(
                *(service.automation.tick() for service in services)  # type: ignore[attr-defined]
            )
            assert sum(tick["reminders"] for tick in swept) == 12, stage
            async with services[0].sessions() as session:
                sent = Counter(
                    await session.scalars(select(Reminder.stage).where(Reminder.stage == stage))
                )
            assert sent == {stage: 12}
        await eventually(lambda: outbox_drained(services[0]), what="the reminders published")
        overdue = await stream_facts(nc, "SUBSCRIPTIONS", InvoiceOverdue.SUBJECT)
        assert len(overdue) == len({e.id for e in overdue}) == 36
    complaints = [
        record.getMessage()
        for record in caplog.records
        if record.levelno >= logging.WARNING and record.name.startswith("services.subscriptions")
    ]
    assert complaints == []
