"""Void and reissue, on SQLite and PostgreSQL: after a void, `invoices reissue` or the
next run bills the member again under a new number; the void number stays in the
series, so two numbers are used, one invoice is live, and the series has no gap."""

from __future__ import annotations

from datetime import date

import pytest
from nats.aio.client import Client

from contracts.subscriptions_v1 import ListInvoices, ReissueInvoice, ShowInvoice, VoidInvoice
from kernel.commands import CommandFailed, request
from kernel.settings import Settings
from tests.conftest import eventually
from tests.finance_support import Clock, facts_on, pay
from tests.subscriptions_helpers import enrol_reference, run_to_end, subscriptions

YEAR_START = date(2008, 4, 1)


@pytest.fixture
def store_services() -> tuple[str, ...]:
    return ("subscriptions",)


async def test_a_void_invoice_is_billed_again_under_a_new_number_with_no_gap(
    store_settings: Settings, nc: Client
) -> None:
    clock = Clock(YEAR_START)
    async with subscriptions(store_settings, clock=clock):
        await enrol_reference(nc)
        await run_to_end(nc, 2008)
        clock.on(date(2008, 4, 14))
        second = await request(nc, ShowInvoice(number="INV-000002"))
        await request(nc, VoidInvoice(invoice="INV-000002", reason="wrong billing address"))

        reissued = await request(nc, ReissueInvoice(invoice="INV-000002"))
        assert reissued == {"invoice": "INV-000046", "replaces": "INV-000002", "gross": 200_000}
        new = await request(nc, ShowInvoice(number="INV-000046", html=True))
        assert (new["billed_name"], new["gross"], new["replaces_invoice"]) == (
            second["billed_name"],
            second["gross"],
            "INV-000002",
        )
        assert (new["issued_on"], new["due_on"], new["status"]) == (
            "2008-04-14",
            "2008-05-14",
            "issued",
        )
        assert "Replaces invoice INV-000002" in new["html"]

        listed = (await request(nc, ListInvoices(year=2008)))["invoices"]
        assert [i["number"] for i in listed] == [f"INV-{n:06d}" for n in range(1, 47)]
        own = [i for i in listed if i["billed_name"] == second["billed_name"]]
        assert sorted((i["number"], i["status"]) for i in own) == [
            ("INV-000002", "void"),
            ("INV-000046", "issued"),
        ]
        assert sum(i["outstanding"] for i in own) == 200_000  # billed once

        messages = {}
        for number, code in (
            ("INV-000002", "conflict"),  # already billed again
            ("INV-000001", "invalid"),  # not void
            ("CN-000001", "not_found"),
            ("INV-000999", "not_found"),
        ):
            with pytest.raises(CommandFailed) as refused:
                await request(nc, ReissueInvoice(invoice=number))
            assert (refused.value.error.code, refused.value.error.field) == (code, "invoice")
            messages[number] = refused.value.error.message
        assert messages["INV-000002"] == (
            f"invoice INV-000046 already bills {second['billed_name']} for 2008"
        )
        assert messages["INV-000001"] == "invoice INV-000001 is not void; void it first"

        # The new invoice takes money as any other; the void one still takes none.
        paid = await request(nc, pay("INV-000046", 200_000, date(2008, 4, 20)))
        assert paid["status"] == "paid"
        await eventually(
            lambda: _issued(nc, "INV-000046"), what="the new invoice's InvoiceIssued fact"
        )


async def _issued(nc: Client, number: str) -> bool:
    return any(f["number"] == number for f in await facts_on(nc, "subscriptions.invoice.issued"))


async def test_the_next_run_bills_a_voided_member_again_and_says_what_it_replaces(
    store_settings: Settings, nc: Client
) -> None:
    clock = Clock(YEAR_START)
    async with subscriptions(store_settings, clock=clock):
        await enrol_reference(nc)
        await run_to_end(nc, 2008)
        await request(nc, VoidInvoice(invoice="INV-000003", reason="raised in error"))
        await request(nc, VoidInvoice(invoice="INV-000007", reason="raised in error"))

        clock.on(date(2008, 5, 1))
        again = await run_to_end(nc, 2008)
        assert (again["to_bill"], again["issued"], again["already_billed"]) == (2, 2, 43)
        replaced = [
            (await request(nc, ShowInvoice(number=n)))["replaces_invoice"]
            for n in ("INV-000046", "INV-000047")
        ]
        assert replaced == ["INV-000003", "INV-000007"]
        final = await run_to_end(nc, 2008)
        assert (final["issued"], final["already_billed"]) == (0, 45)
        listed = (await request(nc, ListInvoices(year=2008)))["invoices"]
        assert [i["number"] for i in listed] == [f"INV-{n:06d}" for n in range(1, 48)]
        assert sum(1 for i in listed if i["status"] != "void") == 45
