"""Money under concurrency, through the subscriptions service running on two and three
replicas over one store (SQLite, and PostgreSQL where rows are read concurrently):
an invoice never takes more than it is owed, each accepted payment is one InvoicePaid
fact, and a void racing payments never leaves a void invoice with money on it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from sqlalchemy import func, select

from contracts import Envelope, Message
from contracts.money import Money
from contracts.subscriptions_v1 import (
    InvoicePaid,
    InvoiceVoided,
    JoinMember,
    ListInvoices,
    RecordPayment,
    ShowInvoice,
    VoidInvoice,
)
from contracts.system_v1 import Reply
from kernel.commands import CommandFailed, request, request_raw
from kernel.runtime import Service
from kernel.settings import Settings
from services.subscriptions.app import create_service
from services.subscriptions.store import Invoice, Payment, find_invoice
from tests.conftest import eventually
from tests.events_support import requests_answered
from tests.stack import outbox_drained
from tests.subscriptions_helpers import billing_settings, run_to_end

DISTRICT_GROSS = 200_000  # £2,000.00 for 2008, no VAT
RECEIVED = date(2008, 4, 20)
BILLED_AT = datetime(2008, 4, 1, 10, tzinfo=UTC)


@pytest.fixture
def store_services() -> tuple[str, ...]:
    """Only the subscriptions store goes on PostgreSQL in ``store_settings``."""
    return ("subscriptions",)


@asynccontextmanager
async def replicas(settings: Settings, nc: Client, count: int) -> AsyncIterator[list[Service]]:
    """``count`` subscriptions services on one store, answering one queue group."""
    async with AsyncExitStack() as stack:
        services = [
            await stack.enter_async_context(
                # Their clock on the day the runs are dated, so no run is backdated.
                create_service(
                    settings, billing=billing_settings(), clock=lambda: BILLED_AT
                ).running()
            )
            for _ in range(count)
        ]
        await _every_replica_answers(nc, services)
        yield services


async def _every_replica_answers(nc: Client, services: list[Service]) -> None:
    """Probe until each replica has taken a request, so a race can reach them all."""

    async def all_answered() -> bool:
        # Refused as not found: whichever replica the probe reached answers.
        with contextlib.suppress(CommandFailed):
            await request(nc, ShowInvoice(number="INV-999999"))
        return all(requests_answered(s, ShowInvoice.SUBJECT) for s in services)

    await eventually(all_answered, timeout=20, interval=0.01, what="every replica answering")


async def billed_district_councils(nc: Client, count: int) -> list[str]:
    """Invoice numbers of ``count`` new district councils billed £2,000 for 2008."""
    for n in range(count):
        await request(
            nc,
            JoinMember(
                name=f"District Council {n:02d}",
                tier="district",
                billing_email=f"finance{n:02d}@district.example.gov.uk",
                joined_on=date(2008, 4, 1),
            ),
        )
    run = await run_to_end(nc, 2008, issued_on=date(2008, 4, 1))
    assert run["issued"] == count
    invoices = (await request(nc, ListInvoices(year=2008)))["invoices"]
    assert {i["gross"] for i in invoices} == {DISTRICT_GROSS}
    return [i["number"] for i in invoices]


def payment(number: str, pence: int, n: int) -> RecordPayment:
    return RecordPayment(
        invoice=number,
        amount=Money(amount_minor=pence),
        received_on=RECEIVED,
        reference=f"BACS {n}",
    )


async def attempt(nc: Client, command: Message) -> Reply:
    """Send a command and return its reply, accepted or refused."""
    return await request_raw(nc, command.SUBJECT, Envelope.wrap(command).to_bytes(), timeout=30)


@dataclass(frozen=True)
class Books:
    """What the store holds for one invoice."""

    status: str
    paid_pence: int
    payments: list[int]  # amounts of its payment rows
    payment_ids: set[str]


async def books(service: Service, number: str) -> Books:
    async with service.sessions() as session:
        invoice = await find_invoice(session, number)
        assert invoice is not None
        rows = list(
            await session.execute(
                select(Payment.id, Payment.amount_pence).where(Payment.invoice_id == invoice.id)
            )
        )
        return Books(invoice.status, invoice.paid_pence, [a for _, a in rows], {i for i, _ in rows})


async def facts_in_subscriptions(nc: Client, subject: str) -> list[Envelope]:
    """Every fact on ``subject`` in the SUBSCRIPTIONS stream, oldest first."""
    js = nc.jetstream()
    info = await js.stream_info("SUBSCRIPTIONS")
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg("SUBSCRIPTIONS", seq)
        except NotFoundError:
            continue
        if msg.subject == subject:
            found.append(Envelope.from_bytes(msg.data))
    return found


async def published_everything(nc: Client, service: Service) -> None:
    """Wait until every fact committed to the shared outbox is on the stream."""
    await eventually(lambda: outbox_drained(service), what="the outbox drained")


def answered(services: list[Service], subject: str) -> list[int]:
    return [requests_answered(s, subject) for s in services]


@pytest.mark.slow
@pytest.mark.parametrize("replica_count", [2, 3])
async def test_ten_racing_payments_larger_than_half_an_invoice_are_accepted_once(
    store_settings: Settings, nc: Client, replica_count: int
) -> None:
    """Ten £1,500 payments at once on each of three £2,000 invoices: one is recorded,
    nine are refused as more than the £500 left, and one InvoicePaid fact goes out."""
    async with replicas(store_settings, nc, replica_count) as services:
        numbers = await billed_district_councils(nc, 3)
        before = answered(services, RecordPayment.SUBJECT)

        replies = await asyncio.gather(
            *(attempt(nc, payment(number, 150_000, n)) for n in range(10) for number in numbers)
        )

        spread = [
            a - b for a, b in zip(answered(services, RecordPayment.SUBJECT), before, strict=True)
        ]
        assert sum(spread) == 30 and all(spread), spread  # every replica took part
        by_invoice = {number: replies[i :: len(numbers)] for i, number in enumerate(numbers)}
        await published_everything(nc, services[0])
        paid_facts = await facts_in_subscriptions(nc, InvoicePaid.SUBJECT)
        for number, own in by_invoice.items():
            accepted = [r for r in own if r.ok]
            refused = [r.error for r in own if not r.ok]
            assert len(accepted) == 1, (number, own)
            assert accepted[0].data is not None
            assert (accepted[0].data["paid"], accepted[0].data["outstanding"]) == (150_000, 50_000)
            assert {(e.code, e.field) for e in refused if e} == {("overpayment", "amount")}
            assert all(
                e and "£1,500.00 is more than the £500.00 outstanding" in e.message for e in refused
            ), refused

            held = await books(services[0], number)
            assert (held.status, held.paid_pence, held.payments) == (
                "part_paid",
                150_000,
                [150_000],
            )
            assert held.paid_pence == sum(held.payments)
            shown = await request(nc, ShowInvoice(number=number))
            assert (shown["paid"], shown["outstanding"], len(shown["payments"])) == (
                150_000,
                50_000,
                1,
            )
            own_facts = [f for f in paid_facts if f.data["number"] == number]
            assert {f.data["payment_id"] for f in own_facts} == held.payment_ids
            assert len(own_facts) == 1
            assert own_facts[0].data["outstanding"]["amount_minor"] == 50_000


@pytest.mark.slow
@pytest.mark.parametrize("replica_count", [2, 3])
async def test_a_void_racing_payments_either_voids_an_unpaid_invoice_or_is_refused(
    store_settings: Settings, nc: Client, replica_count: int
) -> None:
    """A void sent amid five £100 payments, on each of six invoices: either the void
    wins and every payment is refused, or a payment wins and the void is refused;
    never a void invoice with money on it."""
    async with replicas(store_settings, nc, replica_count) as services:
        numbers = await billed_district_councils(nc, 6)
        before = answered(services, RecordPayment.SUBJECT)

        async def race(number: str) -> tuple[Reply, list[Reply]]:
            commands: list[Message] = [payment(number, 10_000, n) for n in range(5)]
            commands.insert(2, VoidInvoice(invoice=number, reason="raised in error"))
            replies = await asyncio.gather(*(attempt(nc, c) for c in commands))
            return replies[2], replies[:2] + replies[3:]

        outcomes = dict(
            zip(numbers, await asyncio.gather(*(race(n) for n in numbers)), strict=True)
        )

        spread = [
            a - b for a, b in zip(answered(services, RecordPayment.SUBJECT), before, strict=True)
        ]
        assert sum(spread) == 30 and all(spread), spread  # every replica took part

        await published_everything(nc, services[0])
        paid_facts = await facts_in_subscriptions(nc, InvoicePaid.SUBJECT)
        voided_facts = await facts_in_subscriptions(nc, InvoiceVoided.SUBJECT)
        for number, (void, payments) in outcomes.items():
            held = await books(services[0], number)
            shown = await request(nc, ShowInvoice(number=number))
            own_paid = [f for f in paid_facts if f.data["number"] == number]
            own_voided = [f for f in voided_facts if f.data["number"] == number]
            if void.ok:  # the void came first: nothing can be paid on a void invoice
                assert [p.error.code for p in payments if p.error] == ["void"] * 5, payments
                assert (held.status, held.paid_pence, held.payments) == ("void", 0, [])
                assert (shown["status"], shown["paid"], shown["payments"]) == ("void", 0, [])
                assert (len(own_paid), len(own_voided)) == (0, 1)
            else:  # a payment came first: the void is refused and every payment stands
                assert void.error is not None and void.error.code == "paid", void
                assert "credit it instead of voiding it" in void.error.message
                assert all(p.ok for p in payments), payments
                assert (held.status, held.paid_pence) == ("part_paid", 50_000)
                assert held.paid_pence == sum(held.payments)
                assert sorted(held.payments) == [10_000] * 5
                assert (shown["outstanding"], len(shown["payments"])) == (150_000, 5)
                assert sorted(f.data["payment_id"] for f in own_paid) == sorted(held.payment_ids)
                assert own_voided == []
        async with services[0].sessions() as session:  # the rule the race must never break
            void_with_money = select(func.count()).where(
                Invoice.status == "void", Invoice.paid_pence != 0
            )
            assert await session.scalar(void_with_money) == 0
