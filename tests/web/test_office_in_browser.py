"""The back office in a real browser (Debian's Chromium): a finance officer signs in,
previews and runs the year's invoicing for the reference partnership, records a part
payment and sees what is outstanding change; with JavaScript on and off. axe-core
checks every back-office page. Screenshots go to docs/screenshots when
VESTRY_SCREENSHOTS is set, else to the test's own folder."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from playwright.async_api import Page, expect

from contracts.events_v1 import BookPlace
from contracts.subscriptions_v1 import InvoiceSummary, ListInvoices, ShowInvoice
from kernel.commands import request
from kernel.settings import Settings
from tests.browser import SCREENSHOTS, assert_no_axe_violations, screenshot
from tests.web.conftest import NewContext
from tests.web.test_office_access import PASSWORD, add_staff
from tests.web.test_office_pages import YEAR, enrol_reference_partnership
from tests.web_support import Site, running_site, upcoming_event

FINANCE = "fiona.finance@partnership.example.org"


@pytest.fixture
async def site(
    settings: Settings, nc: Client, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Site]:
    monkeypatch.setenv("VESTRY_AUTOMATION", "false")  # the officer runs the year, not the clock
    async with running_site(settings) as running:
        await enrol_reference_partnership(nc)
        yield running


def shots(tmp_path: Path) -> Path:
    return SCREENSHOTS if os.environ.get("VESTRY_SCREENSHOTS") else tmp_path


async def sign_in(page: Page, site: Site, email: str, password: str = PASSWORD) -> None:
    await page.goto(f"{site.url}/office/")
    await expect(page.get_by_role("heading", name="Sign in to the back office")).to_be_visible()
    await page.get_by_label("Email address").fill(email)
    await page.get_by_label("Password", exact=True).fill(password)
    await page.get_by_role("button", name="Sign in").click()


@pytest.mark.slow
@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
async def test_a_finance_officer_runs_the_year_and_records_a_part_payment(
    site: Site, nc: Client, new_context: NewContext, javascript: bool, tmp_path: Path
) -> None:
    await add_staff(nc, FINANCE, "finance")
    page = await (await new_context(javascript=javascript)).new_page()
    folder = shots(tmp_path) if javascript else tmp_path

    await sign_in(page, site, FINANCE, "not the password")
    await expect(page.locator(".govuk-error-summary")).to_contain_text(
        "Enter a correct email address and password"
    )
    await assert_no_axe_violations(page)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Today")).to_be_visible()
    await assert_no_axe_violations(page)

    await page.get_by_role("link", name="Invoicing", exact=True).click()
    await expect(page.get_by_role("heading", name="Invoicing", exact=True)).to_be_visible()
    await assert_no_axe_violations(page)
    await page.get_by_label("Financial year").select_option(str(YEAR))
    await page.get_by_role("button", name="Preview the run").click()
    await expect(page.get_by_role("heading", name="Preview of the run")).to_be_visible()
    preview = page.locator("#preview")
    await expect(preview.get_by_role("row", name=re.compile("upper-tier 20 "))).to_be_visible()
    await expect(preview.get_by_role("row", name=re.compile("district 24 "))).to_be_visible()
    await expect(preview.get_by_role("row", name=re.compile("public-service 1 "))).to_be_visible()
    await assert_no_axe_violations(page)
    await screenshot(page, "office-preview", folder)
    assert (await request(nc, ListInvoices(year=YEAR)))["invoices"] == []

    await page.get_by_role("button", name="Issue 45 invoices for £230,500.00").click()
    await expect(page.get_by_role("heading", name="Run completed")).to_be_visible()
    await expect(page.get_by_text("45 invoices issued for £230,500.00")).to_be_visible()
    await assert_no_axe_violations(page)
    recurring = (await request(nc, ListInvoices(year=YEAR)))["invoices"]
    assert len(recurring) == 45 and sum(i["gross"] for i in recurring) == 23_050_000

    await page.get_by_role("link", name=f"See the invoices for {YEAR}").click()
    await expect(page.locator("#invoice-count")).to_have_text(
        "45 documents: £230,500.00 billed, £0.00 paid, £230,500.00 outstanding."
    )
    await assert_no_axe_violations(page)
    wigan = page.get_by_role("row", name=re.compile("Wigan Council"))
    await wigan.get_by_role("link").click()
    await expect(page.get_by_role("heading", name=re.compile(r"^Invoice "))).to_be_visible()
    number = (await page.get_by_role("heading", level=1).inner_text()).removeprefix("Invoice ")
    await assert_no_axe_violations(page)
    await screenshot(page, "office-invoice", folder)

    await page.get_by_role("button", name="Record a payment").click()
    await page.get_by_label("Amount received").fill("lots")
    await page.get_by_role("button", name="Record payment").click()
    await expect(page.locator("#amount-error")).to_contain_text("Enter the amount received")
    await assert_no_axe_violations(page)
    await page.get_by_label("Amount received").fill("2,500.00")
    await page.get_by_label("Bank reference (optional)").fill("BACS 20260505")
    await page.get_by_role("button", name="Record payment").click()
    await expect(page.get_by_text("The payment is recorded.")).to_be_visible()
    outstanding = page.locator("#invoice-summary").get_by_text("£6,500.00")
    await expect(outstanding).to_be_visible()
    await assert_no_axe_violations(page)
    assert (await request(nc, ShowInvoice(number=number)))["outstanding"] == 650_000

    await page.get_by_role("link", name="Today").click()
    totals = page.locator("#by-tier tr").last
    await expect(totals).to_contain_text("£230,500.00")
    await expect(totals).to_contain_text("£2,500.00")
    await expect(totals).to_contain_text("£228,000.00")
    await expect(page.locator("#aged-debt")).to_contain_text("£228,000.00")
    await assert_no_axe_violations(page)
    await screenshot(page, "office-today", folder)
    summary = await request(nc, InvoiceSummary(year=YEAR))
    assert summary["totals"]["outstanding"] == 22_800_000

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_text("You have signed out.")).to_be_visible()
    await page.goto(f"{site.url}/office/invoices")
    await expect(page.get_by_role("heading", name="Sign in to the back office")).to_be_visible()


@pytest.mark.slow
async def test_axe_finds_nothing_on_any_back_office_page(
    site: Site, nc: Client, new_context: NewContext
) -> None:
    await add_staff(nc, "ola.everything@partnership.example.org", "finance", "events", "operator")
    await add_staff(nc, "carol.comms@partnership.example.org", "comms")
    event_id = await upcoming_event(nc, title="Information governance forum", capacity=3)
    await request(
        nc, BookPlace(event_id=event_id, name="Sam Lee", email="sam@bolton.example.gov.uk")
    )
    page = await (await new_context()).new_page()
    await page.goto(f"{site.url}/office/sign-in")
    await assert_no_axe_violations(page)
    await sign_in(page, site, "ola.everything@partnership.example.org")
    await expect(page.get_by_role("heading", name="Today")).to_be_visible()
    await expect(page.get_by_text("Information governance forum")).to_be_visible()
    await expect(page.get_by_text("Services and consumers")).to_be_visible()
    await assert_no_axe_violations(page)

    await page.goto(f"{site.url}/office/invoicing/preview?year={YEAR}")
    await page.get_by_role("button", name=re.compile("^Issue 45 invoices")).click()
    await expect(page.get_by_role("heading", name="Run completed")).to_be_visible()
    run_url = page.url
    [first, second, *_] = (await request(nc, ListInvoices(year=YEAR)))["invoices"]
    members = await page.goto(f"{site.url}/office/members")
    assert members is not None
    member_href = await page.get_by_role("link", name="Wigan Council").get_attribute("href")
    for path in (
        "/office/",
        "/office/members",
        "/office/members?tier=district&q=council&status=current",
        member_href,
        "/office/invoicing",
        f"/office/invoicing/preview?year={YEAR}",  # everyone billed
        f"/office/invoicing/preview?year={YEAR + 1}",  # the catalogue has no price yet, or a preview
        run_url.removeprefix(site.url),
        f"/office/invoices?year={YEAR}",
        f"/office/invoices?year={YEAR}&status=overdue",
        f"/office/invoices/{first['number']}",
        f"/office/invoices/{first['number']}/payment",
        f"/office/invoices/{second['number']}/void",
        "/office/account",
        "/office/invoices/NO-SUCH",
        "/office/members/no-such-member",
    ):
        await page.goto(f"{site.url}{path}")
        await assert_no_axe_violations(page)
    await page.goto(f"{site.url}/office/invoices/{second['number']}/void")
    await page.get_by_role("button", name="Void invoice").click()  # no reason: errors shown
    await expect(page.locator(".govuk-error-summary")).to_be_visible()
    await assert_no_axe_violations(page)

    comms = await (await new_context()).new_page()
    await sign_in(comms, site, "carol.comms@partnership.example.org")
    await expect(comms.get_by_role("heading", name="Today")).to_be_visible()
    await assert_no_axe_violations(comms)
    await comms.goto(f"{site.url}/office/invoices")
    await expect(
        comms.get_by_role("heading", name="You do not have access to this page")
    ).to_be_visible()
    await assert_no_axe_violations(comms)
