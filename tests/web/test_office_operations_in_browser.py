"""The operator's pages and the finance officer's new member pages in a real browser
(Debian's Chromium): a membership fact a bug made events fail on is dead-lettered, the
bug is fixed, and an operator finds the letter and sends it back, with JavaScript on and
off; a comms user's POST to record a payment and an events officer's redrive, sent from
their own signed-in browsers, are refused 403 and change nothing; axe-core on every
operations and member page at desktop and phone widths, none of which scrolls sideways
at 375 pixels."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import pytest
from nats.aio.client import Client
from playwright.async_api import Page, expect

from contracts.subscriptions_v1 import (
    JoinMember,
    ListInvoices,
    ListMembers,
    RunInvoicing,
    ShowInvoice,
)
from kernel.commands import request
from kernel.deadletter import DeadLetter, read_dead_letters
from kernel.settings import Settings
from services.events import handlers as events_handlers
from tests.browser import assert_no_axe_violations
from tests.conftest import eventually
from tests.stack import membership_views
from tests.web.conftest import NewContext
from tests.web.test_office_access import add_staff, billed_invoice
from tests.web.test_office_events_in_browser import no_wider_than_the_phone
from tests.web.test_office_in_browser import sign_in
from tests.web_support import Site, running_site
from vestry.demo_invoicing import current_financial_year

OPERATOR = "otto.operator@partnership.example.org"
FINANCE = "fiona.finance@partnership.example.org"
COMMS = "carol.comms@partnership.example.org"
EVENTS_OFFICER = "evie.events@partnership.example.org"
YEAR = current_financial_year()


@pytest.fixture
def bug(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """A bug in events' handling of a new membership, present until the test fixes it:
    events tries the fact, backs off, and dead-letters it (as in
    tests/integration/test_dead_letters.py)."""
    present = {"present": True}
    original = events_handlers.on_membership_started

    async def buggy(fact: Any, ctx: Any) -> None:
        if present["present"]:
            raise RuntimeError("the membership view's table is locked")
        await original(fact, ctx)

    monkeypatch.setattr(events_handlers, "on_membership_started", buggy)
    return present


@pytest.fixture
async def site(
    bug: dict[str, bool], settings: Settings, nc: Client, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Site]:
    monkeypatch.setenv("VESTRY_AUTOMATION", "false")
    async with running_site(settings) as running:
        for email, roles in (
            (OPERATOR, ("operator",)),
            (FINANCE, ("finance",)),
            (COMMS, ("comms",)),
            (EVENTS_OFFICER, ("events",)),
        ):
            await add_staff(nc, email, *roles)
        yield running


async def join(nc: Client, name: str) -> None:
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


async def dead_letters_in_events(nc: Client, count: int) -> list[DeadLetter] | None:
    found = [
        letter
        for letter in await read_dead_letters(nc.jetstream())
        if letter.headers.get("Vestry-Service") == "events"
    ]
    return found if len(found) == count else None


async def post_from_the_page(page: Page, url: str, fields: dict[str, str]) -> int:
    """Send a form from the signed-in page, as its browser would: its cookies, a real POST."""
    async with page.expect_response(url) as answered:
        await page.evaluate(
            """([url, fields]) => {
              const form = document.createElement("form");
              form.method = "post";
              form.action = url;
              for (const [name, value] of Object.entries(fields)) {
                const input = document.createElement("input");
                input.type = "hidden";
                input.name = name;
                input.value = value;
                form.append(input);
              }
              document.body.append(form);
              form.submit();
            }""",
            [url, fields],
        )
    return (await answered.value).status


async def csrf_token(page: Page) -> str:
    token = await page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    return token


@pytest.mark.slow
@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
async def test_an_operator_redrives_a_dead_letter_once_the_bug_is_fixed(
    site: Site, nc: Client, bug: dict[str, bool], new_context: NewContext, javascript: bool
) -> None:
    await join(nc, "Wigan Council")
    [letter] = await eventually(
        lambda: dead_letters_in_events(nc, 1), timeout=20, what="events' dead letter"
    )
    assert letter.kind == "handler" and "table is locked" in letter.error
    views = await membership_views(site.events)
    bug["present"] = False  # fixed and deployed

    page = await (await new_context(javascript=javascript)).new_page()
    await sign_in(page, site, OPERATOR)
    await expect(page.get_by_role("heading", name="Today")).to_be_visible()
    await page.get_by_role("link", name="Operations", exact=True).click()
    await expect(page.get_by_role("heading", name="Operations", exact=True)).to_be_visible()
    await expect(page.locator("#consumers")).to_contain_text("events-subscriptions")
    await assert_no_axe_violations(page)
    await page.get_by_role("link", name="Dead letters: messages a service could not handle").click()
    row = page.locator("#dead-letters tbody tr", has_text="events")
    await expect(row).to_contain_text("subscriptions.membership.started")
    await assert_no_axe_violations(page)
    await row.get_by_role("link", name=str(letter.sequence)).click()
    await expect(page.get_by_role("heading", name=f"Dead letter {letter.sequence}")).to_be_visible()
    await expect(page.locator("#letter-summary")).to_contain_text("table is locked")
    await expect(page.locator("#message")).to_contain_text("Wigan Council")
    await assert_no_axe_violations(page)

    await page.get_by_role("button", name="Send it back to events").click()
    await expect(page.get_by_text("The dead letter was applied")).to_be_visible()
    await expect(page.locator("#no-letters")).to_have_text("No dead letters.")
    await assert_no_axe_violations(page)
    assert await membership_views(site.events) == views + 1
    assert await read_dead_letters(nc.jetstream()) == []


@pytest.mark.slow
async def test_a_comms_users_payment_and_an_events_officers_redrive_are_refused(
    site: Site, nc: Client, bug: dict[str, bool], new_context: NewContext
) -> None:
    number = await billed_invoice(nc)
    [letter] = await eventually(
        lambda: dead_letters_in_events(nc, 1), timeout=20, what="events' dead letter"
    )
    bug["present"] = False

    comms = await (await new_context()).new_page()
    await sign_in(comms, site, COMMS)
    await expect(comms.get_by_role("heading", name="Today")).to_be_visible()
    payment = f"{site.url}/office/invoices/{number}/payment"
    status = await post_from_the_page(
        comms,
        payment,
        {
            "csrf_token": await csrf_token(comms),
            "amount": "1,000.00",
            "received_on-day": "1",
            "received_on-month": "5",
            "received_on-year": str(YEAR),
        },
    )
    assert status == 403
    await expect(
        comms.get_by_role("heading", name="You do not have access to this page")
    ).to_be_visible()
    await assert_no_axe_violations(comms)
    assert (await request(nc, ShowInvoice(number=number)))["paid"] == 0

    events = await (await new_context()).new_page()
    await sign_in(events, site, EVENTS_OFFICER)
    await expect(events.get_by_role("heading", name="Today")).to_be_visible()
    await expect(events.get_by_role("link", name="Operations", exact=True)).to_have_count(0)
    redrive = f"{site.url}/office/operations/dead-letters/events/{letter.sequence}/redrive"
    status = await post_from_the_page(events, redrive, {"csrf_token": await csrf_token(events)})
    assert status == 403
    await expect(
        events.get_by_role("heading", name="You do not have access to this page")
    ).to_be_visible()
    response = await events.goto(f"{site.url}/office/operations/dead-letters")
    assert response is not None and response.status == 403
    assert [d.sequence for d in await read_dead_letters(nc.jetstream())] == [letter.sequence]


async def pages_of_the_operator_and_finance(site: Site, nc: Client) -> list[str]:
    """Every new page of operations and of members, in the states worth seeing."""
    await join(nc, "Bolton Council")
    [letter] = await eventually(
        lambda: dead_letters_in_events(nc, 1), timeout=20, what="events' dead letter"
    )
    await request(nc, RunInvoicing(year=YEAR))

    async def invoiced() -> list[dict[str, Any]]:
        return (await request(nc, ListInvoices(year=YEAR)))["invoices"]

    [invoice] = await eventually(invoiced, what="Bolton's invoice")
    member = "/office/members/" + await member_id(nc, "Bolton Council")
    return [
        "/office/operations",
        "/office/operations/dead-letters",
        f"/office/operations/dead-letters/events/{letter.sequence}",
        "/office/operations/audit",  # the join, the run and the staff accounts
        "/office/operations/audit?action=no_such_action",
        "/office/members",
        "/office/members/new",
        "/office/members/import",
        f"{member}/tier",
        f"{member}/leave",
        f"/office/invoices/{invoice['number']}",
    ]


async def member_id(nc: Client, name: str) -> str:
    members = (await request(nc, ListMembers()))["members"]
    return next(m["member_id"] for m in members if m["name"] == name)


@pytest.mark.slow
@pytest.mark.parametrize("mobile", [False, True], ids=["desktop", "375px"])
async def test_axe_finds_nothing_on_the_operations_and_member_pages(
    site: Site, nc: Client, new_context: NewContext, mobile: bool
) -> None:
    await add_staff(nc, "ola.both@partnership.example.org", "operator", "finance")
    paths = await pages_of_the_operator_and_finance(site, nc)
    page = await (await new_context(mobile=mobile)).new_page()
    await sign_in(page, site, "ola.both@partnership.example.org")
    await expect(page.get_by_role("heading", name="Today")).to_be_visible()
    for path in paths:
        await page.goto(f"{site.url}{path}")
        await assert_no_axe_violations(page)
        if mobile:
            assert await no_wider_than_the_phone(page), path

    # Forms sent back with their problems shown, and a file with bad rows.
    member = next(p for p in paths if p.endswith("/tier")).removesuffix("/tier")
    for path, button in (
        ("/office/members/new", "Add the member"),
        (f"{member}/tier", "Change tier"),
        (f"{member}/leave", "Record that it leaves"),
        ("/office/members/import", "Import the members"),
    ):
        await page.goto(f"{site.url}{path}")
        if path.endswith("/tier"):
            await page.get_by_label("Month").fill("13")
        await page.get_by_role("button", name=button).click()
        await expect(page.locator(".govuk-error-summary")).to_be_visible()
        await assert_no_axe_violations(page)
        if mobile:
            assert await no_wider_than_the_phone(page), path
    await page.goto(f"{site.url}/office/members/import")
    await page.get_by_label("CSV file of members").set_input_files(
        files=[
            {
                "name": "members.csv",
                "mimeType": "text/csv",
                "buffer": (
                    "name,tier,billing_email,joined_on\n"
                    f"Oldham Council,district,not-an-address,{YEAR}-04-01\n"
                    "Oldham Town Council,district,ap@oldham.example.gov.uk,\n"
                ).encode(),
            }
        ]
    )
    await page.get_by_role("button", name="Import the members").click()
    await expect(page.locator("#bad-rows tbody tr")).to_have_count(2)
    await expect(page.locator("#bad-rows")).to_contain_text(re.compile(r"2\s*billing_email"))
    await expect(page.locator("#bad-rows")).to_contain_text(re.compile(r"3\s*joined_on"))
    await assert_no_axe_violations(page)
    if mobile:
        assert await no_wider_than_the_phone(page)
