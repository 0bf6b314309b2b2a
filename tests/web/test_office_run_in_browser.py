"""A finance officer follows a slow invoicing run on its page in a real browser: with
JavaScript the page brings itself up to date until the run completes, without a reload;
without it, the Check progress button does. axe-core checks the page while it goes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client
from playwright.async_api import expect

from kernel.settings import Settings
from tests.browser import assert_no_axe_violations
from tests.web.conftest import NewContext
from tests.web.test_office_access import add_staff
from tests.web.test_office_in_browser import FINANCE, sign_in
from tests.web.test_office_pages import YEAR, enrol_reference_partnership
from tests.web_support import Site, running_site


@pytest.fixture
async def site(
    settings: Settings, nc: Client, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Site]:
    monkeypatch.setenv("VESTRY_AUTOMATION", "false")
    # Five members a chunk and a second between chunks: the 45 take about nine seconds,
    # longer than the confirmation waits, so the officer lands on a run still going.
    monkeypatch.setenv("VESTRY_INVOICE_RUN_CHUNK", "5")
    monkeypatch.setenv("VESTRY_INVOICE_RUN_PAUSE_S", "1.0")
    async with running_site(settings) as running:
        await enrol_reference_partnership(nc)
        yield running


@pytest.mark.slow
@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
async def test_a_slow_run_is_followed_on_its_page_until_it_completes(
    site: Site, nc: Client, new_context: NewContext, javascript: bool
) -> None:
    await add_staff(nc, FINANCE, "finance")
    page = await (await new_context(javascript=javascript)).new_page()
    await sign_in(page, site, FINANCE)
    await expect(page.get_by_role("heading", name="Today")).to_be_visible()

    await page.goto(f"{site.url}/office/invoicing/preview?year={YEAR}")
    await page.get_by_role("button", name="Issue 45 invoices for £230,500.00").click()
    await expect(page.get_by_role("heading", name="Invoicing run: running")).to_be_visible()
    state = page.locator("#run-state")
    await expect(state).to_have_attribute("role", "status")
    await expect(state).to_contain_text("so far")
    await assert_no_axe_violations(page)
    run_page = page.url

    if javascript:
        await page.evaluate("window.stillTheSamePage = true")
        await expect(page.get_by_role("heading", name="Run completed")).to_be_visible(
            timeout=60_000
        )
        await expect(state).to_have_text("45 of 45 invoices issued.")
        assert await page.evaluate("window.stillTheSamePage") is True  # no reload
        assert page.url == run_page
    else:
        for _ in range(60):
            if await page.get_by_role("heading", name="Run completed").count():
                break
            await page.wait_for_timeout(1000)
            await page.get_by_role("button", name="Check progress").click()
        await expect(page.get_by_role("heading", name="Run completed")).to_be_visible()
        await expect(state).to_have_text("45 of 45 invoices issued.")
    await expect(page.get_by_text("45 invoices issued for £230,500.00")).to_be_visible()
    await expect(page.get_by_role("button", name="Check progress")).to_have_count(0)
    await assert_no_axe_violations(page)
