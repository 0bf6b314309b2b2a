"""The alerts officer's pages in a real browser (Debian's Chromium), with JavaScript on
and off: a broadcast composed, its email and SMS previewed as the notifications service
renders them (the SMS's parts counted as it is typed, or on "Preview" without the
script), sent, and followed until it completes, each subscriber's email arriving at the
real SMTP capture; axe-core on every alerts page at desktop and phone widths, none of
which scrolls sideways at 375 pixels. The composer's screenshot goes to docs/screenshots
when VESTRY_SCREENSHOTS is set, else to the test's own folder."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from playwright.async_api import Page, expect

from contracts.notifications_v1 import AddContact, ListDeliveries
from kernel.commands import request
from kernel.settings import Settings
from tests.browser import assert_no_axe_violations, screenshot
from tests.conftest import Mailbox, eventually
from tests.notifications_support import quick
from tests.web.conftest import NewContext
from tests.web.test_office_access import add_staff
from tests.web.test_office_events_in_browser import no_wider_than_the_phone
from tests.web.test_office_in_browser import shots, sign_in
from tests.web_support import Site, running_site
from vestry.natsserver import free_port

COMMS = "carol.comms@partnership.example.org"
SUBSCRIBERS = [
    ("Priya Shah", "priya.shah@wigan.example.gov.uk", "Wigan Council", "07400 100001"),
    ("Sam Lee", "sam.lee@bolton.example.gov.uk", "Bolton Council", None),
    ("Ana Silva", "ana.silva@salford.example.gov.uk", "Salford City Council", "07400 100003"),
]
HEADLINE = "Bin collections move a day later next week"
BODY = (
    "Because of the bank holiday, every collection from Monday 25 May moves one day "
    "later, Saturday included.\n\nGarden waste collections restart on 1 June."
)


@pytest.fixture
async def site(settings: Settings, nc: Client) -> AsyncIterator[Site]:
    port = free_port()
    async with running_site(quick(settings, public_url=f"http://127.0.0.1:{port}"), port=port) as s:
        await add_staff(nc, COMMS, "comms")
        for name, email, organisation, mobile in SUBSCRIBERS:
            await request(
                nc,
                AddContact(
                    email=email,
                    name=name,
                    organisation=organisation,
                    mobile=mobile,
                    sms_consent=mobile is not None,
                    topics=["waste_and_recycling"],
                ),
            )
        yield s


async def compose(page: Page, headline: str, body: str) -> None:
    await page.get_by_label("Who it goes to").select_option("waste_and_recycling")
    await page.get_by_label("SMS (text message)").check()
    await page.get_by_label("Headline").fill(headline)
    await page.get_by_label("Message", exact=True).fill(body)


@pytest.mark.slow
@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
async def test_a_comms_user_previews_and_sends_a_broadcast_and_watches_it_complete(
    site: Site,
    nc: Client,
    mailbox: Mailbox,
    new_context: NewContext,
    javascript: bool,
    tmp_path: Path,
) -> None:
    page = await (await new_context(javascript=javascript)).new_page()
    await sign_in(page, site, COMMS)
    await page.get_by_role("link", name="Alerts", exact=True).click()
    await expect(page.get_by_role("heading", name="Alerts", exact=True)).to_be_visible()
    await page.get_by_role("button", name="Send a broadcast").click()
    await expect(page.get_by_role("heading", name="Send a broadcast")).to_be_visible()
    composer_url = page.url
    count = page.locator("#sms-count")

    # Far too long for an SMS: the count says so, as typed with the script, on
    # "Preview" without it.
    await compose(page, "✓ " * 100, BODY)
    if not javascript:
        await page.get_by_role("button", name="Preview").click()
    await expect(count).to_contain_text("more than the 2 allowed")
    await compose(page, HEADLINE, BODY)
    if javascript:
        await expect(count).to_have_text(re.compile(r"^The SMS takes 2 parts \(\d+ characters"))
        assert page.url == composer_url  # nothing was sent: the script asked for a preview
    else:
        await page.get_by_role("button", name="Preview").click()
        await expect(count).to_contain_text("The SMS takes 2 parts")
    preview = page.locator("#preview")
    await expect(preview.locator("#email-subject")).to_contain_text(HEADLINE)
    await expect(preview.locator("#reach")).to_contain_text("3 people follow this topic")
    await expect(preview.locator("#reach")).to_contain_text("3 by email and 2 by SMS")
    await expect(preview.locator("#sms-text")).to_contain_text(f"{HEADLINE}. Because of")
    frame = page.frame_locator("iframe[title='The email as it will arrive']")
    await expect(frame.get_by_role("heading", name=HEADLINE)).to_be_visible()
    await expect(frame.get_by_text("Garden waste collections restart on 1 June.")).to_be_visible()
    # Styled as it will arrive: the page's policy lets the email's own inline styles through.
    await expect(frame.locator("body")).to_have_css("font-family", "Arial, sans-serif")
    await expect(frame.locator("body")).to_have_css("color", "rgb(27, 27, 27)")
    await assert_no_axe_violations(page)
    if javascript:
        await screenshot(page, "office-broadcast", shots(tmp_path))

    await page.get_by_role("button", name="Send the broadcast").click()
    await expect(page.get_by_role("heading", name=re.compile("^Broadcast"))).to_be_visible()
    broadcast_url = page.url
    if javascript:  # the page follows it by itself
        await expect(page.get_by_text("Broadcast complete")).to_be_visible(timeout=30_000)
        assert page.url == broadcast_url
    else:
        for _ in range(60):
            if await page.get_by_text("Broadcast complete").count():
                break
            check = page.get_by_role("button", name="Check progress")
            if await check.count():
                await check.click()
            else:
                await page.reload()
        await expect(page.get_by_text("Broadcast complete")).to_be_visible()
    await expect(page.locator("#outcome")).to_contain_text("5 sent, 0 failed")
    await expect(page.locator("#broadcast-state")).to_have_text(
        "5 of 5 deliveries settled: 5 sent, 0 failed."
    )
    await assert_no_axe_violations(page)

    def received(to: str) -> bool:
        return any(m.to == to and m.subject == HEADLINE for m in mailbox.mails())

    for _, email, _, _ in SUBSCRIBERS:
        await eventually(lambda email=email: received(email), what=f"{email}'s email")
    text = next(m for m in mailbox.mails() if m.to == SUBSCRIBERS[0][1]).text()
    assert "Garden waste collections restart on 1 June." in text

    await page.get_by_role("link", name="Every delivery of this broadcast").click()
    await expect(page.locator("#deliveries tbody tr")).to_have_count(5)
    await assert_no_axe_violations(page)
    ledger = await request(nc, ListDeliveries())
    assert ledger["counts"]["sent"] == 5


async def pages_of_the_alerts_officer(site: Site, nc: Client) -> list[str]:
    contact = await request(nc, AddContact(email="jo@example.org", name="Jo Patel"))
    return [
        "/office/alerts",
        "/office/alerts/contacts",
        "/office/alerts/contacts?q=council&topic=waste_and_recycling",
        f"/office/alerts/contacts/{contact['contact_id']}",
        f"/office/alerts/contacts/{contact['contact_id']}/details",
        "/office/alerts/contacts/new",
        "/office/alerts/broadcasts/new",
        "/office/alerts/broadcasts/new?topic=waste_and_recycling",
        "/office/alerts/deliveries",
        "/office/alerts/deliveries?status=failed",
        "/office/alerts/contacts/no-such-person",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("mobile", [False, True], ids=["desktop", "375px"])
async def test_axe_finds_nothing_on_the_alerts_pages(
    site: Site, nc: Client, new_context: NewContext, mobile: bool
) -> None:
    page = await (await new_context(mobile=mobile)).new_page()
    await sign_in(page, site, COMMS)
    await expect(page.get_by_role("heading", name="Today")).to_be_visible()
    for path in await pages_of_the_alerts_officer(site, nc):
        await page.goto(f"{site.url}{path}")
        await assert_no_axe_violations(page)
        if mobile:
            assert await no_wider_than_the_phone(page), path

    # A broadcast going out and done, and its deliveries.
    await page.goto(f"{site.url}/office/alerts/broadcasts/new")
    await compose(page, HEADLINE, BODY)
    await page.get_by_role("button", name="Preview").click()
    await expect(page.locator("#email-subject")).to_contain_text(HEADLINE)
    await assert_no_axe_violations(page)
    if mobile:
        assert await no_wider_than_the_phone(page)
    await page.get_by_role("button", name="Send the broadcast").click()
    await expect(page.get_by_text("Broadcast complete")).to_be_visible(timeout=30_000)
    await assert_no_axe_violations(page)
    await page.goto(f"{site.url}/office/alerts/deliveries")
    await assert_no_axe_violations(page)
    if mobile:
        assert await no_wider_than_the_phone(page)

    # Forms sent back with their problems shown.
    for path, button in (
        ("/office/alerts/broadcasts/new", "Send the broadcast"),
        ("/office/alerts/contacts/new", "Add the contact"),
    ):
        await page.goto(f"{site.url}{path}")
        await page.get_by_role("button", name=button).click()
        await expect(page.locator(".govuk-error-summary")).to_be_visible()
        await assert_no_axe_violations(page)
        if mobile:
            assert await no_wider_than_the_phone(page), path
