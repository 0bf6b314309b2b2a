"""The back office's pages over HTTP, against the real services: what a finance officer
sees and does, each figure the subscriptions service's own."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import date

import httpx
import pytest
from nats.aio.client import Client

from contracts.subscriptions_v1 import InvoiceSummary, ListInvoices, ShowInvoice
from kernel.commands import request
from kernel.settings import Settings
from tests.web.test_office_access import add_staff, problem_text, staff_client
from tests.web_support import Site, form_token, running_site
from vestry.demo import reference_members
from vestry.demo_invoicing import current_financial_year

YEAR = current_financial_year()


async def enrol_reference_partnership(nc: Client) -> None:
    for member in reference_members(joined_on=date(YEAR, 4, 1)):
        await request(nc, member)


def cells(page: httpx.Response, table_id: str) -> list[list[str]]:
    """The text of each row's cells in the table with ``table_id``."""
    found = re.search(rf'<table[^>]*id="{table_id}".*?</table>', page.text, re.S)
    assert found, f"no table {table_id}"
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", found.group(0), re.S)
    return [
        [
            re.sub(r"<[^>]+>|\s+", " ", cell).strip()
            for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        ]
        for row in rows
    ]


@pytest.fixture
async def site(
    settings: Settings, nc: Client, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Site]:
    monkeypatch.setenv("VESTRY_AUTOMATION", "false")  # the officer runs the year, not the clock
    async with running_site(settings) as running:
        await enrol_reference_partnership(nc)
        await add_staff(nc, "fiona.finance@partnership.example.org", "finance")
        yield running


async def test_a_finance_officer_previews_runs_and_collects_the_year(
    site: Site, nc: Client
) -> None:
    async with staff_client(site, "fiona.finance@partnership.example.org") as client:
        runs = await client.get("/office/invoicing")
        assert runs.status_code == 200 and "No runs for this year yet" in runs.text

        preview = await client.get(f"/office/invoicing/preview?year={YEAR}")
        assert preview.status_code == 200
        assert cells(preview, "preview")[1:] == [
            ["district", "24", "£48,000.00", "£0.00", "£48,000.00"],
            ["public-service", "1", "£2,500.00", "£0.00", "£2,500.00"],
            ["upper-tier", "20", "£180,000.00", "£0.00", "£180,000.00"],
            ["All tiers", "45", "£230,500.00", "£0.00", "£230,500.00"],
        ]
        assert (await request(nc, ListInvoices(year=YEAR)))["invoices"] == []  # nothing yet

        csrf = await form_token(client, f"/office/invoicing/preview?year={YEAR}")
        started = await client.post(
            "/office/invoicing/runs", data={"csrf_token": csrf, "year": str(YEAR)}
        )
        assert started.status_code == 303
        run = await client.get(started.headers["location"])
        assert "Run completed" in run.text and "45 invoices issued for £230,500.00" in run.text

        again = await client.post(
            "/office/invoicing/runs", data={"csrf_token": csrf, "year": str(YEAR)}
        )
        assert again.status_code == 303  # a second run bills nobody twice
        assert "0 invoices issued" in (await client.get(again.headers["location"])).text
        assert len((await request(nc, ListInvoices(year=YEAR)))["invoices"]) == 45
        nothing_left = await client.get(f"/office/invoicing/preview?year={YEAR}")
        assert "Every member is already billed" in nothing_left.text

        listed = await client.get(f"/office/invoices?year={YEAR}")
        assert (
            "45 documents: £230,500.00 billed, £0.00 paid, £230,500.00 outstanding" in listed.text
        )
        district = await client.get(f"/office/invoices?year={YEAR}&tier=district")
        assert "24 documents: £48,000.00 billed" in district.text

        number = cells(listed, "invoices")[1][0]
        invoice = await client.get(f"/office/invoices/{number}")
        assert invoice.status_code == 200 and "Record a payment" in invoice.text

        csrf = await form_token(client, f"/office/invoices/{number}/payment")
        received = {"received_on-day": "5", "received_on-month": "5", "received_on-year": str(YEAR)}
        too_much = await client.post(
            f"/office/invoices/{number}/payment",
            data={"csrf_token": csrf, "amount": "1,000,000.00", **received},
        )
        assert too_much.status_code == 409
        assert re.search(r'id="amount-error"[^>]*>.*?outstanding', too_much.text, re.S)
        not_money = await client.post(
            f"/office/invoices/{number}/payment",
            data={
                "csrf_token": csrf,
                "amount": "lots",
                "received_on-day": "31",
                "received_on-month": "2",
                "received_on-year": "2027",
            },
        )
        assert not_money.status_code == 400
        assert "Enter the amount received" in problem_text(not_money)
        assert "Enter the date the money arrived" in problem_text(not_money)
        assert (await request(nc, ShowInvoice(number=number)))["paid"] == 0

        part = await client.post(
            f"/office/invoices/{number}/payment",
            data={"csrf_token": csrf, "amount": "£1,000.50", "reference": "BACS 1", **received},
        )
        assert part.status_code == 303
        shown = await client.get(part.headers["location"])
        assert "The payment is recorded" in shown.text
        assert cells(shown, "payments")[1] == [f"5 May {YEAR}", "BACS 1", "£1,000.50"]
        assert (await request(nc, ShowInvoice(number=number)))["status"] == "part_paid"

        summary = await request(nc, InvoiceSummary(year=YEAR))
        assert summary["totals"]["outstanding"] == 23_050_000 - 100_050
        today = await client.get(f"/office/?year={YEAR}")
        assert cells(today, "by-tier")[-1] == [
            "All tiers",
            "45",
            "£230,500.00",
            "£1,000.50",
            "£229,499.50",
        ]
        assert ["Not yet due", "£229,499.50"] in cells(today, "aged-debt")

        unpaid = await client.get(f"/office/invoices?year={YEAR}&status=part_paid")
        assert "1 document: £" in unpaid.text and number in unpaid.text

        # Void another one, with a reason; the paid one cannot be voided.
        other = cells(listed, "invoices")[2][0]
        csrf = await form_token(client, f"/office/invoices/{other}/void")
        no_reason = await client.post(
            f"/office/invoices/{other}/void", data={"csrf_token": csrf, "reason": ""}
        )
        assert no_reason.status_code == 400
        voided = await client.post(
            f"/office/invoices/{other}/void", data={"csrf_token": csrf, "reason": "Billed in error"}
        )
        assert voided.status_code == 303
        assert (await request(nc, ShowInvoice(number=other)))["status"] == "void"
        refused = await client.post(
            f"/office/invoices/{number}/void", data={"csrf_token": csrf, "reason": "Try anyway"}
        )
        assert refused.status_code == 409 and "has payments" in problem_text(refused)


async def test_members_are_searched_and_filtered_and_each_has_a_page(
    site: Site, nc: Client
) -> None:
    async with staff_client(site, "fiona.finance@partnership.example.org") as client:
        every = await client.get("/office/members")
        assert "45 of 45 members shown" in every.text
        districts = await client.get("/office/members?tier=district")
        assert "24 of 45 members shown" in districts.text
        wigan = await client.get("/office/members?q=wIGAN")
        assert "1 of 45 members shown" in wigan.text
        member_id = re.search(r'href="/office/members/([^"]+)">Wigan Council<', wigan.text)
        assert member_id
        page = await client.get(f"/office/members/{member_id.group(1)}")
        assert page.status_code == 200
        assert "accounts@wigan-council.example.gov.uk" in page.text
        assert "None yet." in page.text
        # An edited address shows everything or nothing, never an error.
        assert "45 of 45" in (await client.get("/office/members?tier=<script>&status=x")).text
        assert (await client.get("/office/members/no-such-member")).status_code == 404
        assert (await client.get("/office/members/x")).status_code == 404
        assert (await client.get("/office/invoices/INV-999999")).status_code == 404
        assert (await client.get("/office/invoicing/runs/no-such-run")).status_code == 404
        assert (await client.get("/office/invoices?year=banana")).status_code == 200
