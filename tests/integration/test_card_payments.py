"""Paying an invoice by card through the subscriptions service, against the GOV.UK Pay
stand-in on a real port: a payment that succeeded is recorded once, whichever checks
arrive (the person's return, the provider's webhooks), in any order, any number of
times, at once, on several replicas over one store (SQLite and PostgreSQL); one that
failed, was cancelled or expired records nothing; the provider's word is the only one
believed."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from nats.aio.client import Client

from contracts import Envelope
from contracts.money import Money
from contracts.subscriptions_v1 import (
    CheckCardPayment,
    InvoicePaid,
    RecordPayment,
    ShowInvoice,
    ShowPaymentDue,
    StartCardPayment,
)
from contracts.system_v1 import Reply
from kernel.commands import CommandFailed, request, request_raw
from kernel.runtime import Service
from kernel.settings import Settings
from services.subscriptions.app import create_service
from tests.conftest import eventually
from tests.finance_support import facts_on
from tests.pay_support import attempts, card_books, invoiced_member, pay_stand_in, paying
from tests.stack import outbox_drained
from tests.subscriptions_helpers import billing_settings
from vestry.paystandin import DECLINED_CARD, PayStandIn

RETURN_URL = "http://127.0.0.1:9/pay/INV/done?s=x&a=y"


@pytest.fixture
async def stand_in() -> AsyncIterator[PayStandIn]:
    async with pay_stand_in() as running:
        yield running


@pytest.fixture
async def service(settings: Settings, stand_in: PayStandIn) -> AsyncIterator[Service]:
    async with create_service(
        paying(settings, stand_in), billing=billing_settings()
    ).running() as running:
        yield running


def attempt_id() -> str:
    return secrets.token_urlsafe(16)


async def start(nc: Client, number: str, attempt: str | None = None) -> dict:
    return await request(
        nc,
        StartCardPayment(
            invoice=number, card_payment=attempt or attempt_id(), return_url=RETURN_URL
        ),
    )


def on_return(number: str, attempt: str) -> CheckCardPayment:
    """The check the site asks for when the person comes back from the card page."""
    return CheckCardPayment(invoice=number, card_payment=attempt)


def on_webhook(payment_id: str) -> CheckCardPayment:
    """The check the site asks for when a signed webhook names the payment."""
    return CheckCardPayment(provider_payment_id=payment_id)


def provider_id(stand_in: PayStandIn, started: dict) -> str:
    (payment,) = [p for p in stand_in.payments.values() if p.token in started["next_url"]]
    return payment.payment_id


async def paid_facts(nc: Client, service: Service) -> list[dict]:
    await eventually(lambda: outbox_drained(service), what="the outbox drained")
    return await facts_on(nc, InvoicePaid.SUBJECT)


@pytest.mark.parametrize(
    "checks",
    [
        ["return"],
        ["webhook"],
        ["return", "webhook"],
        ["webhook", "return", "webhook", "return"],
    ],
    ids=["return", "webhook", "both", "both-twice"],
)
async def test_a_paid_card_payment_is_recorded_once_whichever_checks_arrive(
    service: Service, stand_in: PayStandIn, nc: Client, checks: list[str]
) -> None:
    invoice = await invoiced_member(nc)
    number, gross = invoice["number"], invoice["gross"]
    attempt = attempt_id()
    started = await start(nc, number, attempt)
    assert started["next_url"].startswith(f"{stand_in.url}/secure/")
    assert (started["amount"], started["outcome"]) == (gross, "in_progress")
    payment_id = provider_id(stand_in, started)
    assert stand_in.payments[payment_id].amount == gross
    assert stand_in.payments[payment_id].reference == number
    # Started is not paid: nothing is recorded before the provider says so.
    assert (await request(nc, on_return(number, attempt)))["outcome"] == "in_progress"
    assert await card_books(service, number) == ("issued", 0, [], 0)

    stand_in.pay_with_card(payment_id)
    answers = [
        await request(nc, on_return(number, attempt) if c == "return" else on_webhook(payment_id))
        for c in checks
    ]

    assert [a["outcome"] for a in answers] == ["paid"] * len(checks)
    assert [a["recorded"] for a in answers] == [True] + [False] * (len(checks) - 1)
    assert (answers[-1]["outstanding"], answers[-1]["status"]) == (0, "paid")
    assert await card_books(service, number) == ("paid", gross, [gross], 1)
    shown = await request(nc, ShowInvoice(number=number))
    assert [p["reference"] for p in shown["payments"]] == [f"Card payment {payment_id}"]
    facts = await paid_facts(nc, service)
    assert [(f["number"], f["amount"]["amount_minor"], f["fully_paid"]) for f in facts] == [
        (number, gross, True)
    ]


@pytest.mark.parametrize(
    ("happens", "outcome", "code"),
    [
        ("cancelled_on_the_card_page", "cancelled", "P0030"),
        ("declined", "failed", "P0010"),
        ("expired", "expired", "P0020"),
    ],
)
async def test_a_payment_that_did_not_go_through_records_nothing(
    service: Service, stand_in: PayStandIn, nc: Client, happens: str, outcome: str, code: str
) -> None:
    invoice = await invoiced_member(nc)
    number = invoice["number"]
    attempt = attempt_id()
    payment_id = provider_id(stand_in, await start(nc, number, attempt))
    if happens == "cancelled_on_the_card_page":
        stand_in.pay_cancelled_by_user(payment_id)
    elif happens == "declined":
        stand_in.pay_with_card(payment_id, DECLINED_CARD)
    else:
        stand_in.expire(payment_id)

    by_return = await request(nc, on_return(number, attempt))
    by_webhook = await request(nc, on_webhook(payment_id))

    for answer in (by_return, by_webhook):
        assert (answer["outcome"], answer["recorded"]) == (outcome, False)
        assert answer["outstanding"] == invoice["gross"]
    assert await card_books(service, number) == ("issued", 0, [], 0)
    (kept,) = await attempts(service)
    assert (kept.status, kept.finished, kept.code, kept.payment_id) == (
        stand_in.payments[payment_id].status,
        True,
        code,
        None,
    )
    # The person may try again: a new payment for the whole amount.
    again = await start(nc, number)
    assert again["amount"] == invoice["gross"] and not again["already_paid"]


async def test_only_the_providers_word_counts_not_the_callers(
    service: Service, stand_in: PayStandIn, nc: Client
) -> None:
    """A check naming a payment the provider never made, or an attempt of another
    invoice, finds nothing; a webhook about a payment still in progress records nothing."""
    first = await invoiced_member(nc, "Bury Council")
    second = await invoiced_member(nc, "Rochdale Council")
    attempt = attempt_id()
    payment_id = provider_id(stand_in, await start(nc, first["number"], attempt))

    for check in (
        on_webhook("nosuchpaymentatthestandin0"),
        on_return(second["number"], attempt),  # the attempt is the first invoice's
        on_return(first["number"], attempt_id()),
    ):
        with pytest.raises(CommandFailed) as refused:
            await request(nc, check)
        assert refused.value.error.code == "not_found"
    assert (await request(nc, on_webhook(payment_id)))["outcome"] == "in_progress"
    assert (await card_books(service, first["number"]))[1:] == (0, [], 0)


async def test_a_new_start_cancels_the_one_in_progress_so_an_invoice_is_paid_once(
    service: Service, stand_in: PayStandIn, nc: Client
) -> None:
    invoice = await invoiced_member(nc)
    number = invoice["number"]
    first = provider_id(stand_in, await start(nc, number))
    second_attempt = attempt_id()
    second = provider_id(stand_in, await start(nc, number, second_attempt))

    assert (stand_in.payments[first].status, stand_in.payments[first].code) == (
        "cancelled",
        "P0040",
    )
    stand_in.pay_with_card(second)
    assert (await request(nc, on_return(number, second_attempt)))["recorded"] is True
    assert (await request(nc, on_webhook(first)))["outcome"] == "cancelled"
    assert await card_books(service, number) == ("paid", invoice["gross"], [invoice["gross"]], 1)


async def test_a_start_finds_an_earlier_payment_that_was_paid_and_starts_nothing(
    service: Service, stand_in: PayStandIn, nc: Client
) -> None:
    """Paid in one tab, the return lost: starting again in another tab records the first
    payment and takes no second one."""
    invoice = await invoiced_member(nc)
    number = invoice["number"]
    first_attempt = attempt_id()
    first = provider_id(stand_in, await start(nc, number, first_attempt))
    stand_in.pay_with_card(first)

    again = await start(nc, number)

    assert again["already_paid"] is True and again["card_payment"] == first_attempt
    assert len(stand_in.payments) == 1
    assert await card_books(service, number) == ("paid", invoice["gross"], [invoice["gross"]], 1)
    with pytest.raises(CommandFailed) as refused:
        await start(nc, number)
    assert refused.value.error.code == "nothing_due"


async def test_money_taken_for_an_invoice_settled_meanwhile_is_not_set_against_it(
    service: Service, stand_in: PayStandIn, nc: Client
) -> None:
    invoice = await invoiced_member(nc)
    number, gross = invoice["number"], invoice["gross"]
    attempt = attempt_id()
    payment_id = provider_id(stand_in, await start(nc, number, attempt))
    await request(
        nc,
        RecordPayment(
            invoice=number, amount=Money(amount_minor=gross), received_on=invoice["issued_on"]
        ),
    )
    stand_in.pay_with_card(payment_id)

    answer = await request(nc, on_return(number, attempt))

    assert (answer["outcome"], answer["recorded"]) == ("paid", False)
    assert "already paid" in answer["problem"]
    assert await card_books(service, number) == ("paid", gross, [gross], 0)


async def test_what_is_due_and_why_an_invoice_cannot_be_paid_by_card(
    service: Service, stand_in: PayStandIn, nc: Client
) -> None:
    invoice = await invoiced_member(nc)
    number = invoice["number"]
    due = await request(nc, ShowPaymentDue(invoice=number))
    assert (due["outstanding"], due["by_card"], due["card_origin"]) == (
        invoice["gross"],
        True,
        stand_in.url,
    )
    await request(
        nc,
        RecordPayment(
            invoice=number,
            amount=Money(amount_minor=invoice["gross"]),
            received_on=invoice["issued_on"],
        ),
    )
    due = await request(nc, ShowPaymentDue(invoice=number))
    assert (due["outstanding"], due["by_card"]) == (0, False)
    assert due["why_not"] == "This invoice is paid: there is nothing more to pay"
    with pytest.raises(CommandFailed) as refused:
        await request(nc, ShowPaymentDue(invoice="CN-000001"))
    assert refused.value.error.code == "not_found"


async def test_a_provider_that_does_not_answer_changes_nothing(
    service: Service, stand_in: PayStandIn, nc: Client
) -> None:
    invoice = await invoiced_member(nc)
    number = invoice["number"]
    attempt = attempt_id()
    payment_id = provider_id(stand_in, await start(nc, number, attempt))
    stand_in.pay_with_card(payment_id)
    await stand_in.stop()

    for command in (
        on_return(number, attempt),
        StartCardPayment(invoice=number, card_payment=attempt_id(), return_url=RETURN_URL),
    ):
        with pytest.raises(CommandFailed) as refused:
            await request(nc, command)
        assert refused.value.error.code == "unavailable"
        assert "Nothing was taken or changed" in refused.value.error.message
    assert await card_books(service, number) == ("issued", 0, [], 0)

    await stand_in.start()  # back on the same port: the next check records it
    assert (await request(nc, on_webhook(payment_id)))["recorded"] is True


# At once, on several replicas


@pytest.fixture
def store_services() -> tuple[str, ...]:
    return ("subscriptions",)


@pytest.mark.slow
@pytest.mark.parametrize("replica_count", [2, 3])
async def test_returns_and_webhooks_racing_on_replicas_record_one_payment(
    store_settings: Settings, stand_in: PayStandIn, nc: Client, replica_count: int
) -> None:
    settings = paying(store_settings, stand_in)
    async with AsyncExitStack() as stack:
        services = [
            await stack.enter_async_context(
                create_service(settings, billing=billing_settings()).running()
            )
            for _ in range(replica_count)
        ]
        invoice = await invoiced_member(nc)
        number, gross = invoice["number"], invoice["gross"]
        attempt = attempt_id()
        payment_id = provider_id(stand_in, await start(nc, number, attempt))
        stand_in.pay_with_card(payment_id)

        checks = [on_return(number, attempt), on_webhook(payment_id)] * 8
        replies: list[Reply] = await asyncio.gather(
            *(request_raw(nc, c.SUBJECT, Envelope.wrap(c).to_bytes(), timeout=30) for c in checks)
        )

        assert all(r.ok for r in replies), [r.error for r in replies if not r.ok]
        assert [r.data["outcome"] for r in replies if r.data] == ["paid"] * len(checks)
        assert sum(1 for r in replies if r.data and r.data["recorded"]) == 1
        assert await card_books(services[0], number) == ("paid", gross, [gross], 1)
        assert len(await paid_facts(nc, services[0])) == 1


async def test_a_payment_the_provider_forgot_does_not_stop_the_next_one(
    service: Service, stand_in: PayStandIn, nc: Client
) -> None:
    """The development stand-in restarted (or the account changed): its payments are gone,
    and a new start ends the unknown one and creates another."""
    invoice = await invoiced_member(nc)
    number = invoice["number"]
    await start(nc, number)
    stand_in.payments.clear()

    again = await start(nc, number)

    assert again["next_url"].startswith(f"{stand_in.url}/secure/")
    forgotten, live = await attempts(service)
    assert (forgotten.finished, forgotten.status, forgotten.payment_id) == (True, "error", None)
    assert (live.finished, live.status) == (False, "created")
