"""The events officer's pages in a real browser (Debian's Chromium), with JavaScript on
and off: an event created, published and cancelled with a reason, the attendees told
through the real SMTP capture; someone checked in on a phone at 375 pixels; the
channel-shift report's figures against a count of the bookings the test made; axe-core
on every new page at desktop and phone widths; and a comms user refused. Screenshots go
to docs/screenshots when VESTRY_SCREENSHOTS is set, else to the test's own folder."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from nats.aio.client import Client
from playwright.async_api import Page, expect

from contracts.events_v1 import (
    BookPlace,
    CancelEvent,
    CreateEvent,
    ListBookings,
    ShowEvent,
)
from contracts.money import Money
from contracts.subscriptions_v1 import JoinMember
from kernel.commands import request
from kernel.settings import Settings
from services.events.app import create_service as create_events
from tests.browser import assert_no_axe_violations, screenshot
from tests.conftest import Mailbox, eventually
from tests.events_support import Clock, facts, published_event
from tests.notifications_support import quick
from tests.web.conftest import NewContext
from tests.web.test_office_access import add_staff
from tests.web.test_office_in_browser import shots, sign_in
from tests.web_support import Site, running_site, soon, upcoming_event
from vestry.demo_invoicing import current_financial_year
from vestry.natsserver import free_port

EVENTS_OFFICER = "evie.events@partnership.example.org"
COMMS = "carol.comms@partnership.example.org"
LONDON = ZoneInfo("Europe/London")
YEAR = current_financial_year()
UNIT_COSTS = {"web": 39, "phone": 321, "in-person": 823}  # the web settings' defaults
CHANNEL_NAMES = {"web": "Web", "phone": "Phone", "in-person": "In person"}


async def enrol(nc: Client, *names: str) -> None:
    for name in names:
        slug = name.lower().replace(" ", "-")
        await request(
            nc,
            JoinMember(
                name=name,
                tier="district",
                billing_email=f"accounts@{slug}.example.gov.uk",
                joined_on=date(YEAR, 4, 1),
            ),
        )


@pytest.fixture
async def site(settings: Settings, nc: Client) -> AsyncIterator[Site]:
    """The whole stack, with message links pointing at this very site."""
    port = free_port()
    async with running_site(quick(settings, public_url=f"http://127.0.0.1:{port}"), port=port) as s:
        await enrol(nc, "Wigan Council", "Bolton Council")
        await add_staff(nc, EVENTS_OFFICER, "events")
        await add_staff(nc, COMMS, "comms")
        yield s


def no_wider_than_the_phone(page: Page) -> object:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.slow
@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
async def test_an_events_officer_creates_publishes_and_cancels_an_event_and_attendees_are_told(
    site: Site, nc: Client, mailbox: Mailbox, new_context: NewContext, javascript: bool
) -> None:
    page = await (await new_context(javascript=javascript)).new_page()
    day = soon(21).astimezone(LONDON).date()
    await sign_in(page, site, EVENTS_OFFICER)
    await page.get_by_role("link", name="Events", exact=True).click()
    await expect(page.get_by_role("heading", name="Events", exact=True)).to_be_visible()
    await page.get_by_role("button", name="Create an event").click()
    await expect(page.get_by_role("heading", name="Create an event")).to_be_visible()

    await page.get_by_label("Title").fill("Information governance forum")
    await page.get_by_label("Forum meeting").check()
    await page.get_by_label("Programme").select_option("information_sharing_and_security")
    await page.get_by_label("Day").fill(str(day.day))
    await page.get_by_label("Month").fill(str(day.month))
    await page.get_by_label("Year").fill(str(day.year))
    await page.get_by_label("Start time (UK time)").fill("10:00")
    await page.get_by_label("End time (UK time)").fill("9:00")  # before the start
    await page.get_by_label("Venue").fill("Bolton Town Hall")
    await page.get_by_label("Places", exact=True).fill("1")
    await page.get_by_label("Price for everyone else").fill("95")
    await page.get_by_role("button", name="Save as a draft").click()
    await expect(page.locator("#end_time-error")).to_contain_text("must end after it starts")
    await assert_no_axe_violations(page)
    await page.get_by_label("End time (UK time)").fill("13:00")
    await page.get_by_role("button", name="Save as a draft").click()
    await expect(page.get_by_text("The event is saved as a draft")).to_be_visible()
    event_id = page.url.split("/office/events/")[1].split("?")[0]
    event = await request(nc, ShowEvent(event_id=event_id))
    london_start = datetime.combine(day, time(10), LONDON)
    assert datetime.fromisoformat(event["starts_at"]) == london_start.astimezone(UTC)

    await page.get_by_role("button", name="Publish").click()
    await expect(page.get_by_text("The event is published and open for booking")).to_be_visible()

    # One caller booked by the officer, one person on the site (who waits: one place).
    await page.get_by_role("button", name="Book for someone").click()
    await page.get_by_label("By phone").check()
    await page.get_by_label("Full name").fill("Sam Lee")
    await page.get_by_label("Email address").fill("sam.lee@bolton.example.gov.uk")
    await page.get_by_label("Their organisation").select_option(label="Bolton Council")
    await page.get_by_role("button", name="Book the place").click()
    await expect(page.get_by_text("The booking is made")).to_be_visible()
    public = await (await new_context(javascript=javascript)).new_page()
    await public.goto(f"{site.url}/events/{event_id}/book")
    await public.get_by_label("Full name").fill("Priya Shah")
    await public.get_by_label("Email address").fill("priya.shah@wigan.example.gov.uk")
    await public.get_by_role("button", name="Join the waiting list").click()
    await expect(public.get_by_role("heading", name=re.compile("waiting list"))).to_be_visible()
    await page.reload()
    await expect(page.locator("#bookings")).to_contain_text("Sam Lee")
    await expect(page.locator("#waiting")).to_contain_text("Priya Shah")
    await assert_no_axe_violations(page)

    reason = "The speaker is ill. We will offer a new date in the spring."
    await page.get_by_role("button", name="Cancel the event").click()
    await expect(page.get_by_role("heading", name="Cancel the event")).to_be_visible()
    await page.get_by_role("button", name="Cancel the event").click()  # no reason yet
    await expect(page.locator("#reason-error")).to_contain_text("Say why the event is cancelled")
    await assert_no_axe_violations(page)
    await page.get_by_label("Why is it cancelled?").fill(reason)
    await page.get_by_role("button", name="Cancel the event").click()
    await expect(
        page.get_by_text("The event is cancelled, with every booking on it")
    ).to_be_visible()
    await expect(page.locator("#event-summary")).to_contain_text("Cancelled")
    await assert_no_axe_violations(page)

    [cancelled] = await facts(nc, "events.event.cancelled")
    assert cancelled.data["reason"] == reason and cancelled.data["bookings_cancelled"] == 2
    assert cancelled.actor is not None and cancelled.actor.name == "Evie Events"

    def told(to: str) -> bool:
        return any(
            m.to == to and m.subject.startswith("Cancelled: Information governance forum")
            for m in mailbox.mails()
        )

    for attendee in ("sam.lee@bolton.example.gov.uk", "priya.shah@wigan.example.gov.uk"):
        await eventually(lambda attendee=attendee: told(attendee), what=f"{attendee} told")


async def test_the_cancellation_email_carries_the_reason(
    site: Site, nc: Client, mailbox: Mailbox
) -> None:
    event_id = await upcoming_event(nc, title="Lean reviews")
    await request(nc, BookPlace(event_id=event_id, name="Sam Lee", email="sam@example.org"))
    reason = "The speaker is ill; we will offer a new date."
    await request(nc, CancelEvent(event_id=event_id, reason=reason))

    def cancellation() -> str:
        return next(
            (m.text() for m in mailbox.mails() if m.subject.startswith("Cancelled: Lean")), ""
        )

    assert reason in await eventually(cancellation, what="the cancellation email")


@pytest.mark.slow
@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
async def test_someone_is_checked_in_at_the_door_on_a_phone(
    site: Site, nc: Client, new_context: NewContext, javascript: bool, tmp_path: Path
) -> None:
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)  # check-in is open
    event_id = await upcoming_event(nc, title="Customer journey mapping", starts_at=starts)
    for name, email, organisation in (
        ("Priya Shah", "priya.shah@wigan.example.gov.uk", "Wigan Council"),
        ("Sam Lee", "sam.lee@bolton.example.gov.uk", "Bolton Council"),
        ("Ana Silva", "ana.silva@example.org", "Greater Manchester Fire"),
    ):
        await request(
            nc,
            BookPlace(event_id=event_id, name=name, email=email, organisation_name=organisation),
        )
    page = await (await new_context(mobile=True, javascript=javascript)).new_page()
    await sign_in(page, site, EVENTS_OFFICER)
    await page.goto(f"{site.url}/office/events/{event_id}")
    await page.get_by_role("button", name="Check people in").click()
    await expect(page.get_by_role("heading", name="Check in", exact=True)).to_be_visible()
    await expect(page.locator("#arrivals")).to_have_text("0 of 3 checked in.")
    assert await no_wider_than_the_phone(page)
    await assert_no_axe_violations(page)

    await page.get_by_label("Name or booking reference").fill("shah")
    await page.get_by_role("button", name="Find").click()
    await expect(page.get_by_role("heading", name="1 found for “shah”")).to_be_visible()
    await page.get_by_role("button", name="Check in Priya Shah").tap()  # one tap
    await expect(page.get_by_text(re.compile(r"Priya Shah \(B\w+\) is checked in"))).to_be_visible()
    await expect(page.locator("#arrivals")).to_have_text("1 of 3 checked in.")
    await expect(page.locator("#people")).to_contain_text("Checked in")
    assert await no_wider_than_the_phone(page)
    await assert_no_axe_violations(page)
    if javascript:
        await screenshot(page, "office-check-in", shots(tmp_path))

    await page.get_by_role("link", name="Show everyone with a place").click()
    await page.get_by_role("button", name="Check in Sam Lee").tap()
    await expect(page.locator("#arrivals")).to_have_text("2 of 3 checked in.")
    bookings = (await request(nc, ListBookings(event_id=event_id)))["bookings"]
    assert sorted(b["name"] for b in bookings if b["attendance"] == "attended") == [
        "Priya Shah",
        "Sam Lee",
    ]

    await page.goto(f"{site.url}/office/events/{event_id}/attendance")
    await expect(page.locator("#organisations")).to_contain_text("Wigan Council")
    await expect(page.locator("#organisations")).not_to_contain_text("Greater Manchester Fire")
    await assert_no_axe_violations(page)


# The channel-shift report, over months: the events service on a clock the test moves.


@pytest.fixture
async def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The events service's clock, from 1 April of this financial year; the site's and the
    other services' clocks stay the real one."""
    moved = Clock(datetime.combine(date(YEAR, 4, 2), time(9), LONDON).astimezone(UTC))
    monkeypatch.setattr(
        "tests.stack.create_events", lambda settings: create_events(settings, clock=moved)
    )
    return moved


@pytest.fixture
async def clocked_site(clock: Clock, settings: Settings, nc: Client) -> AsyncIterator[Site]:
    async with running_site(quick(settings)) as running:
        await enrol(nc, "Wigan Council", "Bolton Council")
        await add_staff(nc, EVENTS_OFFICER, "events")
        yield running


async def event_in_december(nc: Client, title: str, programme: str, day: int) -> str:
    start = datetime.combine(date(YEAR, 12, day), time(10), LONDON)
    command = CreateEvent(
        kind="forum",
        programme=programme,  # type: ignore[arg-type]
        title=title,
        venue="Wigan Life Centre",
        starts_at=start,
        ends_at=start + timedelta(hours=3),
        capacity=500,
        member_price=Money(amount_minor=0),
        non_member_price=Money(amount_minor=9500),
    )
    return await published_event(nc, **command.model_dump(exclude_none=True))


@pytest.mark.slow
async def test_the_channel_shift_report_equals_a_count_of_the_bookings_made(
    clocked_site: Site, clock: Clock, nc: Client, new_context: NewContext, tmp_path: Path
) -> None:
    site = clocked_site
    forum = await event_in_december(nc, "Security forum", "information_sharing_and_security", 3)
    course = await event_in_december(nc, "Lean practitioner course", "customer_service", 10)
    # Six months of bookings, more on the web and fewer by phone as the year goes on.
    made_in: Counter[tuple[str, str]] = Counter()
    number = 0
    for month_index in range(6):
        clock.now = datetime.combine(date(YEAR, 4 + month_index, 10), time(11), LONDON).astimezone(
            UTC
        )
        month = clock.now.astimezone(LONDON).strftime("%Y-%m")
        mix = {"web": 2 + 2 * month_index, "phone": 5 - month_index, "in-person": month_index % 2}
        for channel, count in mix.items():
            for _ in range(count):
                number += 1
                await request(
                    nc,
                    BookPlace(
                        event_id=forum if number % 3 else course,
                        name=f"Person {number}",
                        email=f"person{number}@example.org",
                        channel=channel,  # type: ignore[arg-type]
                    ),
                )
                made_in[(month, channel)] += 1

    # The last month's: one by phone through the back office, one on the site.
    page = await (await new_context()).new_page()
    await sign_in(page, site, EVENTS_OFFICER)
    await page.goto(f"{site.url}/office/events/{course}/book")
    await page.get_by_label("In person").check()
    await page.get_by_label("Full name").fill("Ana Silva")
    await page.get_by_label("Email address").fill("ana.silva@example.org")
    await page.get_by_role("button", name="Book the place").click()
    await expect(page.get_by_text("The booking is made")).to_be_visible()
    await page.goto(f"{site.url}/events/{forum}/book")
    await page.get_by_label("Full name").fill("Priya Shah")
    await page.get_by_label("Email address").fill("priya.shah@wigan.example.gov.uk")
    await page.get_by_role("button", name="Book place").click()
    await expect(page.get_by_role("heading", name="Booking confirmed")).to_be_visible()
    month = clock.now.astimezone(LONDON).strftime("%Y-%m")
    made_in[(month, "in-person")] += 1
    made_in[(month, "web")] += 1

    # The count, from the bookings themselves.
    bookings = [
        booking
        for event_id in (forum, course)
        for booking in (await request(nc, ListBookings(event_id=event_id)))["bookings"]
    ]
    counted = Counter(b["channel"] for b in bookings)
    assert sum(counted.values()) == sum(made_in.values())

    await page.goto(f"{site.url}/office/reports")
    await page.get_by_role("link", name="Channel shift").click()
    await page.get_by_label("Financial year").select_option(str(YEAR))
    await page.get_by_role("button", name="Show the report").click()
    await expect(page.get_by_role("heading", name="Channel shift")).to_be_visible()
    for channel, name in CHANNEL_NAMES.items():
        row = page.locator("#by-channel tbody tr", has_text=name).first
        cost = counted[channel] * UNIT_COSTS[channel]
        await expect(row).to_have_text(
            re.compile(
                rf"^\s*{name}\s+{counted[channel]}\s+£[\d.]+\s+£{cost // 100:,}\.{cost % 100:02d}\s*$"
            )
        )
    total = sum(counted.values())
    await expect(page.locator("#by-channel tbody tr").last).to_contain_text(f"All channels {total}")
    saved = counted["web"] * (UNIT_COSTS["phone"] - UNIT_COSTS["web"])
    await expect(page.locator("#summary")).to_contain_text(
        f"saved £{saved // 100:,}.{saved % 100:02d} against"
    )
    for (month, channel), count in made_in.items():
        label = date.fromisoformat(f"{month}-01").strftime("%b %Y")
        row = page.locator("#by-month tbody tr", has_text=label)
        column = list(CHANNEL_NAMES).index(channel) + 1
        await expect(row.locator("td").nth(column - 1)).to_have_text(str(count))
    chart = page.locator("#channels-chart")
    await expect(chart).to_have_attribute("role", "img")
    assert await chart.locator("rect[fill='#0e5e5a']").count() >= 6 + 1  # key + a bar a month
    await assert_no_axe_violations(page)
    await screenshot(page, "office-channel-shift", shots(tmp_path))

    # Without JavaScript, and at 375 pixels, the same figures.
    phone = await (await new_context(mobile=True, javascript=False)).new_page()
    await sign_in(phone, site, EVENTS_OFFICER)
    await phone.goto(f"{site.url}/office/reports/channel-shift?year={YEAR}")
    await expect(phone.locator("#by-channel tbody tr").last).to_contain_text(
        f"All channels {total}"
    )
    await assert_no_axe_violations(phone)


async def pages_of_the_events_officer(site: Site, nc: Client) -> list[str]:
    """Every new page, in the states worth seeing: a draft, a published event with
    bookings and a waiting list, a cancelled one, one at the door, and the reports."""
    draft = (
        await request(
            nc,
            CreateEvent(
                kind="seminar",
                programme="customer_service",
                title="Draft seminar",
                online_url="https://meet.example.org/s",
                starts_at=soon(40),
                ends_at=soon(40) + timedelta(hours=2),
                capacity=20,
                member_price=Money(amount_minor=0),
                non_member_price=Money(amount_minor=0),
            ),
        )
    )["event_id"]
    full = await upcoming_event(nc, title="Full forum", capacity=1)
    booked = await request(nc, BookPlace(event_id=full, name="Sam Lee", email="sam@example.org"))
    await request(
        nc,
        BookPlace(event_id=full, name="Ana Silva", email="ana@example.org", channel="phone"),
    )
    door = await upcoming_event(
        nc,
        title="At the door",
        starts_at=datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1),
    )
    await request(nc, BookPlace(event_id=door, name="Jo Patel", email="jo@example.org"))
    gone = await upcoming_event(nc, title="Cancelled workshop")
    await request(nc, CancelEvent(event_id=gone, reason="No speaker"))
    return [
        "/office/events",
        "/office/events?status=published&programme=business_process_improvement",
        "/office/events/new",
        f"/office/events/{draft}",
        f"/office/events/{draft}/edit",
        f"/office/events/{full}",
        f"/office/events/{full}/edit",
        f"/office/events/{full}/book",
        f"/office/events/{full}/cancel",
        f"/office/events/{full}/bookings/{booked['reference']}/cancel",
        f"/office/events/{full}/attendance",
        f"/office/events/{gone}",
        f"/office/events/{door}/check-in",
        f"/office/events/{door}/check-in?q=nobody",
        "/office/events/NO-SUCH",
        "/office/reports",
        f"/office/reports/channel-shift?year={YEAR}",
        f"/office/reports/channel-shift?year={YEAR}&programme=customer_service",
        f"/office/reports/organisations?year={YEAR}",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("mobile", [False, True], ids=["desktop", "375px"])
async def test_axe_finds_nothing_on_the_events_and_reports_pages(
    site: Site, nc: Client, new_context: NewContext, mobile: bool
) -> None:
    page = await (await new_context(mobile=mobile)).new_page()
    await sign_in(page, site, EVENTS_OFFICER)
    await expect(page.get_by_role("heading", name="Today")).to_be_visible()
    paths = await pages_of_the_events_officer(site, nc)
    for path in paths:
        await page.goto(f"{site.url}{path}")
        await assert_no_axe_violations(page)
        if mobile:  # a wide table scrolls in its own box; the page never sideways
            assert await no_wider_than_the_phone(page), path
    # Forms sent back with their problems shown.
    for path, button in (
        ("/office/events/new", "Save as a draft"),
        (next(p for p in paths if p.endswith("/book")), "Book the place"),
        (next(p for p in paths if p.endswith("/cancel")), "Cancel the event"),
    ):
        await page.goto(f"{site.url}{path}")
        await page.get_by_role("button", name=button).click()
        await expect(page.locator(".govuk-error-summary")).to_be_visible()
        await assert_no_axe_violations(page)


@pytest.mark.slow
async def test_a_comms_user_is_refused_the_events_pages(
    site: Site, nc: Client, new_context: NewContext
) -> None:
    event_id = await upcoming_event(nc, title="Lean reviews")
    page = await (await new_context()).new_page()
    await sign_in(page, site, COMMS)
    await expect(page.get_by_role("heading", name="Today")).to_be_visible()
    await expect(page.get_by_role("link", name="Events", exact=True)).to_have_count(0)
    for path in (
        "/office/events",
        f"/office/events/{event_id}",
        f"/office/events/{event_id}/check-in",
        "/office/events/new",
        "/office/reports/channel-shift",
    ):
        response = await page.goto(f"{site.url}{path}")
        assert response is not None and response.status == 403, path
        await expect(
            page.get_by_role("heading", name="You do not have access to this page")
        ).to_be_visible()
    assert (await request(nc, ShowEvent(event_id=event_id)))["status"] == "published"
