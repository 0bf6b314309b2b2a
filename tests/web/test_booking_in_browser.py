"""A person books, tracks and cancels in a real browser (Debian's Chromium), with
JavaScript on and off, on a desktop and at 375 pixels, and with the keyboard alone;
axe-core checks every page. Screenshots go to docs/screenshots when VESTRY_SCREENSHOTS
is set (``make screenshots``), else to the test's own folder."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from playwright.async_api import BrowserContext, Page, expect

from contracts.events_v1 import BookPlace, ShowBooking
from kernel import links
from kernel.commands import request
from kernel.settings import Settings
from tests.browser import SCREENSHOTS, assert_no_axe_violations, screenshot
from tests.conftest import Mailbox, eventually
from tests.notifications_support import quick
from tests.web.conftest import NewContext
from tests.web_support import Site, running_site, upcoming_event
from vestry.natsserver import free_port

PERSON = {"name": "Priya Shah", "email": "priya.shah@wigan.example.gov.uk"}
NEXT_IN_LINE = {"name": "Sam Lee", "email": "sam.lee@bolton.example.gov.uk"}


@pytest.fixture
async def site(settings: Settings) -> AsyncIterator[Site]:
    """The whole stack, with message links pointing at this very site."""
    port = free_port()
    settings = quick(settings, public_url=f"http://127.0.0.1:{port}")
    async with running_site(settings, port=port) as running:
        yield running


def shots(tmp_path: Path) -> Path:
    return SCREENSHOTS if os.environ.get("VESTRY_SCREENSHOTS") else tmp_path


def manage_link(mailbox: Mailbox, to: str, subject: str) -> str | None:
    for mail in mailbox.mails():
        if mail.to == to and mail.message["Subject"].startswith(subject):
            body = mail.message.get_body(("plain",)).get_content()
            found = re.search(r"http://127\.0\.0\.1:\d+/bookings/\w+\?s=[0-9a-f]+", body)
            return found.group(0) if found else None
    return None


async def book_through_the_site(page: Page, site: Site, title: str) -> str:
    """From the programme to the answer page, as a person clicks through; the reference."""
    await page.goto(f"{site.url}/events")
    await page.get_by_role("link", name=title).click()
    await page.get_by_role("button", name="Book a place").click()
    await page.get_by_label("Full name").fill(PERSON["name"])
    await page.get_by_label("Email address").fill(PERSON["email"])
    await page.get_by_role("button", name="Book place").click()
    await expect(page.get_by_role("heading", name="Booking confirmed")).to_be_visible()
    reference = await page.locator(".govuk-panel__body strong").inner_text()
    assert re.fullmatch(r"B[0-9A-Z]{7}", reference), reference
    return reference


@pytest.mark.slow
@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
async def test_a_person_books_gets_the_link_and_cancelling_there_promotes_the_next(
    site: Site,
    nc: Client,
    mailbox: Mailbox,
    new_context: NewContext,
    javascript: bool,
    tmp_path: Path,
) -> None:
    event_id = await upcoming_event(nc, title="Lean reviews in local government", capacity=1)
    page = await (await new_context(javascript=javascript)).new_page()
    folder = shots(tmp_path) if javascript else tmp_path

    await page.goto(f"{site.url}/events")
    await screenshot(page, "programme", folder)
    reference = await book_through_the_site(page, site, "Lean reviews in local government")
    await screenshot(page, "answer", folder)
    assert (await request(nc, ShowBooking(reference=reference)))["channel"] == "web"

    waiting = await request(nc, BookPlace(event_id=event_id, **NEXT_IN_LINE, channel="phone"))
    assert (waiting["status"], waiting["position"]) == ("waitlisted", 1)

    link = await eventually(
        lambda: manage_link(mailbox, PERSON["email"], "Booked:"), what="the confirmation"
    )
    assert link.startswith(site.url)
    await page.goto(link)
    await expect(page.get_by_role("heading", name="Your booking")).to_be_visible()
    await expect(page.get_by_text("Confirmed", exact=True)).to_be_visible()
    await expect(page.get_by_role("link", name="Lean reviews in local government")).to_be_visible()
    await screenshot(page, "manage", folder)

    await page.get_by_role("button", name="Cancel this booking").click()
    await expect(page.get_by_role("heading", name=re.compile("Are you sure"))).to_be_visible()
    await page.get_by_role("button", name="Yes, cancel it").click()
    await expect(page.get_by_text("Your booking is cancelled")).to_be_visible()
    await expect(page.get_by_text("Cancelled", exact=True)).to_be_visible()

    promoted = await request(nc, ShowBooking(reference=waiting["reference"]))
    assert promoted["status"] == "confirmed"
    await eventually(
        lambda: manage_link(mailbox, NEXT_IN_LINE["email"], "A place came free"),
        what="the promotion email, with its own link",
    )


@pytest.mark.slow
async def test_a_refused_booking_shows_the_summary_and_the_message_on_the_field(
    site: Site, nc: Client, page: Page, tmp_path: Path
) -> None:
    event_id = await upcoming_event(nc, title="Customer journey mapping", capacity=5)
    await page.goto(f"{site.url}/events/{event_id}/book")
    await page.get_by_label("Full name").fill(PERSON["name"])
    await page.get_by_label("Email address").fill(PERSON["email"])
    await page.get_by_label("Mobile number (optional)").fill("0161 234 5678")
    await page.get_by_role("button", name="Book place").click()

    summary = page.locator(".govuk-error-summary")
    await expect(summary).to_be_visible()
    await expect(summary).to_be_focused()  # GOV.UK Frontend moves focus to the summary
    await expect(page.locator("#phone-error")).to_contain_text("not a mobile number")
    await expect(page.get_by_label("Full name")).to_have_value(PERSON["name"])
    assert (await page.title()).startswith("Error: ")
    await screenshot(page, "form-error", shots(tmp_path))
    await summary.get_by_role("link").first.click()
    await expect(page.locator("#phone")).to_be_focused()


async def tab_to(page: Page, selector: str, *, presses: int = 60) -> None:
    """Press Tab until the element matching ``selector`` has focus, as a keyboard user would."""
    target = page.locator(selector)
    for _ in range(presses):
        await page.keyboard.press("Tab")
        if await target.evaluate("element => element === document.activeElement"):
            return
    raise AssertionError(f"{selector} is not reachable with the Tab key")


@pytest.mark.slow
async def test_the_whole_booking_can_be_done_with_the_keyboard_alone(
    site: Site, nc: Client, page: Page
) -> None:
    event_id = await upcoming_event(nc, title="Project assurance forum", capacity=5)
    await page.goto(f"{site.url}/events")
    await tab_to(page, f'a[href="/events/{event_id}"]')
    await page.keyboard.press("Enter")
    await tab_to(page, f'a[href="/events/{event_id}/book"]')
    await page.keyboard.press("Enter")
    await tab_to(page, "#name")
    await page.keyboard.type(PERSON["name"])
    await tab_to(page, "#email")
    await page.keyboard.type(PERSON["email"])
    await tab_to(page, "#sms")
    await tab_to(page, "#member_id")
    await tab_to(page, "form button.govuk-button")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Booking confirmed")).to_be_visible()
    await tab_to(page, "a[href^='/bookings/']:not([href*='/calendar.ics'])")  # see or cancel
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Your booking")).to_be_visible()


async def pages_of_the_site(site: Site, nc: Client, settings_secret: str) -> dict[str, str]:
    """Every kind of page a stranger can reach, by name."""
    event_id = await upcoming_event(nc, title="Information governance seminar", capacity=1)
    booked = await request(nc, BookPlace(event_id=event_id, **PERSON))
    full_id = await upcoming_event(nc, title="Full forum", capacity=1, waiting_list=True)
    await request(nc, BookPlace(event_id=full_id, **NEXT_IN_LINE))
    manage = links.booking_url(site.url, settings_secret, booked["reference"])
    return {
        "programme": f"{site.url}/events",
        "programme-filtered": f"{site.url}/events?programme=customer_service&kind=forum",
        "event": f"{site.url}/events/{event_id}",
        "event-waiting-list": f"{site.url}/events/{full_id}",
        "form": f"{site.url}/events/{event_id}/book",
        "answer": manage.replace("/bookings/", f"/events/{event_id}/booked/"),
        "manage": manage,
        "cancel": manage.replace("?s=", "/cancel?s="),
        "find": f"{site.url}/bookings",
        "not-found": f"{site.url}/events/NO-SUCH-EVENT",
        "bad-link": f"{site.url}/bookings/{booked['reference']}?s=0",
        "unsubscribe": links.unsubscribe_url(site.url, "change-me", "c-1", "warp"),
    }


@pytest.mark.slow
@pytest.mark.parametrize("mobile", [False, True], ids=["desktop", "375px"])
async def test_axe_finds_nothing_on_any_page(
    site: Site, nc: Client, settings: Settings, new_context: NewContext, mobile: bool
) -> None:
    context: BrowserContext = await new_context(mobile=mobile)
    page = await context.new_page()
    for name, url in (await pages_of_the_site(site, nc, settings.link_secret)).items():
        await page.goto(url)
        await assert_no_axe_violations(page)
        if mobile:  # nothing wider than the phone
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 375, f"{name} is {width}px wide at 375px"
    await page.goto(f"{site.url}/events/NO-SUCH/book")
    await page.goto(f"{site.url}/bookings")
    await page.get_by_role("button", name="Find booking").click()  # with errors shown
    await assert_no_axe_violations(page)
