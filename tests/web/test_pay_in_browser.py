"""A member's finance contact pays an invoice in a real browser (Debian's Chromium): from
the "pay this invoice" link in the invoice email, through the GOV.UK Pay stand-in's
card page, back to the site's "paid" page; on a desktop and at 375 pixels, with
axe-core checking the site's pages. Screenshots go to docs/screenshots when
VESTRY_SCREENSHOTS is set, else to the test's own folder."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nats.aio.client import Client
from playwright.async_api import Page, expect

from kernel import links
from kernel.settings import Settings
from tests.browser import SCREENSHOTS, assert_no_axe_violations, screenshot
from tests.conftest import Mailbox, eventually
from tests.notifications_support import quick
from tests.pay_support import card_books, invoiced_member, pay_stand_in, paying
from tests.web.conftest import NewContext
from tests.web_support import Site, running_site
from vestry.natsserver import free_port
from vestry.paystandin import PayStandIn


@dataclass
class Paying:
    site: Site
    stand_in: PayStandIn
    settings: Settings


@pytest.fixture
async def paying_site(settings: Settings) -> AsyncIterator[Paying]:
    """The whole stack and the stand-in, links in messages pointing at this very site,
    and the stand-in's webhooks at its /pay/webhook as the person returns."""
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/pay/webhook"
    async with pay_stand_in(webhook_url=webhook) as stand_in:
        settings = quick(paying(settings, stand_in), public_url=f"http://127.0.0.1:{port}")
        async with running_site(settings, port=port) as site:
            yield Paying(site, stand_in, settings)


def pay_link_in_the_invoice_email(mailbox: Mailbox, number: str) -> str | None:
    for mail in mailbox.mails():
        if mail.message["Subject"].startswith(f"Invoice {number}"):
            body = mail.message.get_body(("plain",)).get_content()
            found = re.search(r"http://127\.0\.0\.1:\d+/pay/[\w-]+\?s=[0-9a-f]+", body)
            return found.group(0) if found else None
    return None


async def no_wider_than_the_phone(page: Page, mobile: bool) -> None:
    if mobile:
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"{page.url} is {width}px wide at 375px"


@pytest.mark.slow
@pytest.mark.parametrize("mobile", [False, True], ids=["desktop", "375px"])
async def test_from_the_invoice_email_through_the_card_page_to_paid(
    paying_site: Paying,
    nc: Client,
    mailbox: Mailbox,
    new_context: NewContext,
    mobile: bool,
    tmp_path: Path,
) -> None:
    site = paying_site.site
    invoice = await invoiced_member(nc)
    number, gross = invoice["number"], invoice["gross"]
    link = await eventually(
        lambda: pay_link_in_the_invoice_email(mailbox, number),
        timeout=30,
        what="the invoice email with its pay link",
    )
    assert link.startswith(f"{site.url}/pay/{number}?s=")
    page = await (await new_context(mobile=mobile)).new_page()
    folder = SCREENSHOTS if os.environ.get("VESTRY_SCREENSHOTS") and not mobile else tmp_path

    await page.goto(link)
    await expect(page.get_by_role("heading", name="Pay your invoice")).to_be_visible()
    await expect(page.get_by_text("£2,000.00").first).to_be_visible()
    await assert_no_axe_violations(page)
    await no_wider_than_the_phone(page, mobile)
    await screenshot(page, "pay", folder)

    await page.get_by_role("button", name="Pay £2,000.00 by card").click()
    await expect(page.get_by_role("heading", name="Enter card details")).to_be_visible()
    assert page.url.startswith(f"{paying_site.stand_in.url}/secure/")
    await page.get_by_role("button", name="Confirm payment").click()

    await expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    assert page.url.startswith(f"{site.url}/pay/{number}/done?")
    await expect(page.get_by_text("this invoice is paid in full")).to_be_visible()
    await assert_no_axe_violations(page)
    await no_wider_than_the_phone(page, mobile)
    await screenshot(page, "paid", folder)

    assert await card_books(site.subscriptions, number) == ("paid", gross, [gross], 1)
    await eventually(
        lambda: [d for d in paying_site.stand_in.deliveries if d[2] == 200],
        what="the stand-in's webhook answered",
    )
    assert await card_books(site.subscriptions, number) == ("paid", gross, [gross], 1)
    await page.reload()  # the return again: still one payment
    await expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    assert await card_books(site.subscriptions, number) == ("paid", gross, [gross], 1)


@pytest.mark.slow
async def test_a_cancelled_payment_says_so_and_offers_to_try_again(
    paying_site: Paying, nc: Client, new_context: NewContext
) -> None:
    site = paying_site.site
    invoice = await invoiced_member(nc)
    number = invoice["number"]
    page = await (await new_context(mobile=True)).new_page()
    await page.goto(links.pay_url(site.url, paying_site.settings.link_secret, number))
    await page.get_by_role("button", name=re.compile("by card")).click()
    await page.get_by_role("button", name="Cancel payment").click()

    await expect(page.get_by_role("heading", name="You cancelled your payment")).to_be_visible()
    await expect(page.get_by_text("No money was taken and nothing was recorded")).to_be_visible()
    await assert_no_axe_violations(page)
    await no_wider_than_the_phone(page, True)
    await page.get_by_role("button", name="Try paying again").click()
    await expect(page.get_by_role("heading", name="Pay your invoice")).to_be_visible()
    assert await card_books(site.subscriptions, number) == ("issued", 0, [], 0)
