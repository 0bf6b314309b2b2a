"""Card payments in tests: the GOV.UK Pay stand-in (vestry/paystandin.py) on a free port,
settings that point subscriptions and the site at it, and a member with an invoice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

from nats.aio.client import Client
from sqlalchemy import func, select

from contracts.subscriptions_v1 import JoinMember, ListInvoices, RunInvoicing
from kernel.commands import request
from kernel.runtime import Service
from kernel.settings import Settings
from services.subscriptions.domain.catalog import financial_year
from services.subscriptions.store import CardPayment, Payment, find_invoice
from tests.subscriptions_helpers import wait_for_run
from vestry.paystandin import PayStandIn

API_KEY = "api_test_vestry_stand_in_key_0123456789abcdefghij"
WEBHOOK_SECRET = "webhook_test_vestry_stand_in_secret_0123456789"


@asynccontextmanager
async def pay_stand_in(**options: Any) -> AsyncIterator[PayStandIn]:
    stand_in = PayStandIn(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, **options)
    await stand_in.start()
    try:
        yield stand_in
    finally:
        await stand_in.stop()


def paying(settings: Settings, stand_in: PayStandIn, **overrides: Any) -> Settings:
    """``settings`` with card payments through ``stand_in``."""
    return settings.model_copy(
        update={
            "pay_api_url": stand_in.url,
            "pay_api_key": API_KEY,
            "pay_card_origin": stand_in.url,
            "pay_webhook_secret": WEBHOOK_SECRET,
            **overrides,
        }
    )


async def invoiced_member(
    nc: Client, name: str = "Bury Council", *, year: int | None = None, on: date | None = None
) -> dict[str, Any]:
    """A district council joined on 1 April and billed for the year: its invoice's row
    as ListInvoices gives it (``year`` by default the financial year of today)."""
    year = year or financial_year(date.today())
    await request(
        nc,
        JoinMember(
            name=name,
            tier="district",
            billing_email=f"finance@{name.split()[0].lower()}.example.gov.uk",
            joined_on=date(year, 4, 1),
        ),
    )
    run = await request(nc, RunInvoicing(year=year, issued_on=on))
    await wait_for_run(nc, run["run_id"])
    invoices = (await request(nc, ListInvoices(year=year)))["invoices"]
    (invoice,) = [i for i in invoices if i["billed_name"] == name]
    return invoice


async def card_books(service: Service, number: str) -> tuple[str, int, list[int], int]:
    """For an invoice: its status, what is paid, its payments' amounts, and how many
    payments of any invoice name a provider payment id."""
    async with service.sessions() as session:
        invoice = await find_invoice(session, number)
        assert invoice is not None
        amounts = list(
            await session.scalars(
                select(Payment.amount_pence).where(Payment.invoice_id == invoice.id)
            )
        )
        by_card = await session.scalar(
            select(func.count())
            .select_from(Payment)
            .where(Payment.provider_payment_id.is_not(None))
        )
        return invoice.status, invoice.paid_pence, amounts, int(by_card or 0)


async def attempts(service: Service) -> list[CardPayment]:
    async with service.sessions() as session:
        return list(await session.scalars(select(CardPayment).order_by(CardPayment.created_at)))
