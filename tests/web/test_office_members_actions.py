"""The finance officer's changes to members over HTTP, against the real services: a member
added; a CSV imported, every bad row named by its line (the file's shape here, the
subscriptions service's rules there) and nothing imported until none is; a tier changed
from a date; a member leaving; and an invoice offered as the very document the member
receives, in HTML and as the PDF."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from datetime import date

import httpx
import pytest
from nats.aio.client import Client

from contracts.subscriptions_v1 import JoinMember, ListMembers, RunInvoicing, ShowMember
from kernel.commands import request
from kernel.settings import Settings
from tests.conftest import eventually
from tests.pdf_support import pdf_text
from tests.web.test_office_access import add_staff, problem_text, staff_client
from tests.web.test_office_pages import cells
from tests.web_support import Site, form_token, running_site
from vestry.demo_invoicing import current_financial_year

FINANCE = "fiona.finance@partnership.example.org"
YEAR = current_financial_year()


@pytest.fixture
async def site(
    settings: Settings, nc: Client, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Site]:
    monkeypatch.setenv("VESTRY_AUTOMATION", "false")  # the officer runs the year, not the clock
    async with running_site(settings) as running:
        await request(
            nc,
            JoinMember(
                name="Wigan Council",
                tier="district",
                billing_email="accounts@wigan.example.gov.uk",
                joined_on=date(YEAR, 4, 1),
            ),
        )
        await add_staff(nc, FINANCE, "finance")
        yield running


async def upload(client: httpx.AsyncClient, csrf: str, text: str) -> httpx.Response:
    return await client.post(
        "/office/members/import",
        data={"csrf_token": csrf},
        files={"file": ("members.csv", text.encode(), "text/csv")},
    )


def bad_rows(page: httpx.Response) -> list[list[str]]:
    return [[html.unescape(cell) for cell in row] for row in cells(page, "bad-rows")[1:]]


async def member_id(nc: Client, name: str) -> str:
    members = (await request(nc, ListMembers()))["members"]
    return next(m["member_id"] for m in members if m["name"] == name)


async def test_a_member_is_added_changes_tier_and_leaves(site: Site, nc: Client) -> None:
    async with staff_client(site, FINANCE) as client:
        listing = await client.get("/office/members")
        assert 'href="/office/members/new"' in listing.text
        form = await client.get("/office/members/new")
        assert form.status_code == 200 and "Members are on district." in form.text
        csrf = await form_token(client, "/office/members/new")
        joined = {
            "joined_on-day": "1",
            "joined_on-month": "5",
            "joined_on-year": str(YEAR),
        }
        empty = await client.post("/office/members/new", data={"csrf_token": csrf})
        assert empty.status_code == 400
        assert "Enter the name of the organisation" in problem_text(empty)
        assert "Enter the email address invoices go to" in problem_text(empty)
        fields = {
            "csrf_token": csrf,
            "name": "Bolton Council",
            "billing_email": "finance@bolton.example.gov.uk",
            **joined,
        }
        unknown = await client.post("/office/members/new", data={**fields, "tier": "county"})
        assert unknown.status_code == 409
        assert re.search(r'id="tier-error"[^>]*>.*?the tiers are', unknown.text, re.S)
        taken = await client.post(
            "/office/members/new", data={**fields, "name": "Wigan Council", "tier": "district"}
        )
        assert taken.status_code == 409 and 'id="name-error"' in taken.text
        added = await client.post("/office/members/new", data={**fields, "tier": "district"})
        assert added.status_code == 303
        page = await client.get(added.headers["location"])
        assert "The member is added" in page.text and "Bolton Council" in page.text
        bolton = added.headers["location"].split("/office/members/")[1].split("?")[0]

        assert (await client.get(f"/office/members/{bolton}/tier")).status_code == 200
        change = {
            "csrf_token": csrf,
            "tier": "upper-tier",
            "effective_on-day": "1",
            "effective_on-month": "10",
            "effective_on-year": str(YEAR),
        }
        no_date = await client.post(
            f"/office/members/{bolton}/tier", data={**change, "effective_on-month": "13"}
        )
        assert no_date.status_code == 400 and "Enter the first day at the new tier" in (
            problem_text(no_date)
        )
        no_tier = await client.post(f"/office/members/{bolton}/tier", data={**change, "tier": "x"})
        assert no_tier.status_code == 409 and "the tiers are" in problem_text(no_tier)
        changed = await client.post(f"/office/members/{bolton}/tier", data=change)
        assert changed.status_code == 303
        assert "The tier is changed" in (await client.get(changed.headers["location"])).text
        shown = await request(nc, ShowMember(member=bolton))
        assert shown["tier_changes"] == [
            {
                "effective_on": f"{YEAR}-10-01",
                "old_tier": "district",
                "new_tier": "upper-tier",
            }
        ]

        assert (await client.get(f"/office/members/{bolton}/leave")).status_code == 200
        leaving = {
            "csrf_token": csrf,
            "leaves_on-day": "31",
            "leaves_on-month": "3",
            "leaves_on-year": str(YEAR + 1),
        }
        before_joining = await client.post(
            f"/office/members/{bolton}/leave", data={**leaving, "leaves_on-year": str(YEAR - 1)}
        )
        assert before_joining.status_code == 409 and 'id="leaves_on-error"' in (before_joining.text)
        left = await client.post(f"/office/members/{bolton}/leave", data=leaving)
        assert left.status_code == 303
        gone = await client.get(left.headers["location"])
        assert "Its leaving is recorded" in gone.text and "Record that it leaves" not in gone.text
        assert (await request(nc, ShowMember(member=bolton)))["ends_on"] == f"{YEAR + 1}-03-31"
        assert (await client.get("/office/members/no-such/tier")).status_code == 404


async def test_a_file_imports_whole_or_names_every_bad_row_by_its_line(
    site: Site, nc: Client
) -> None:
    async with staff_client(site, FINANCE) as client:
        assert (await client.get("/office/members/import")).status_code == 200
        csrf = await form_token(client, "/office/members/import")
        header = "name,tier,billing_email,joined_on\n"

        nothing = await client.post("/office/members/import", data={"csrf_token": csrf})
        assert nothing.status_code == 400 and "Choose a CSV file" in problem_text(nothing)

        shape = await upload(
            client,
            csrf,
            header
            + f"Bury Council,district,finance@bury.example.gov.uk,{YEAR}-04-01\n"
            + f"Bolton Council,district,not an address,{YEAR}-04-01\n"
            + f"Bury Council,district,ap@bury.example.gov.uk,{YEAR}-04-01\n"
            + "Salford Council,district,ap@salford.example.gov.uk,\n"
            + f"Oldham Council,district,ap@oldham.example.gov.uk,{YEAR}-04-01,extra\n",
        )
        assert shape.status_code == 400
        assert [line for line, _ in bad_rows(shape)] == ["3", "4", "5", "6"]
        rows = dict(bad_rows(shape))
        assert "billing_email" in rows["3"] and "also on line 2" in rows["4"]
        assert "joined_on" in rows["5"] and "more columns" in rows["6"]
        assert "4 rows of the file cannot be imported, so nobody was" in problem_text(shape)

        ruled = await upload(
            client,
            csrf,
            header
            + f"Bury Council,district,finance@bury.example.gov.uk,{YEAR}-04-01\n"
            + f"Wigan Council,district,ap@wigan.example.gov.uk,{YEAR}-04-01\n"
            + f"Salford Council,county,ap@salford.example.gov.uk,{YEAR}-04-01\n",
        )
        assert ruled.status_code == 409
        rows = dict(bad_rows(ruled))
        assert list(rows) == ["3", "4"]
        assert "Wigan Council is already a member" in rows["3"]
        assert "Unknown tier 'county'" in rows["4"]
        assert len((await request(nc, ListMembers()))["members"]) == 1  # nobody joined

        header_wrong = await upload(client, csrf, "organisation,tier\nBury,district\n")
        assert [line for line, _ in bad_rows(header_wrong)] == ["1"]
        not_text = await client.post(
            "/office/members/import",
            data={"csrf_token": csrf},
            files={"file": ("members.csv", b"\xff\xfe\x00bad", "text/csv")},
        )
        assert "CSV UTF-8" in not_text.text

        done = await upload(
            client,
            csrf,
            "\ufeffName,Tier,Billing_email,Joined_on,Reference\n"  # as a spreadsheet saves it
            + f"Bury Council,district,finance@bury.example.gov.uk,{YEAR}-04-01,PO-1\n"
            + f"Salford Council,upper-tier,ap@salford.example.gov.uk,{YEAR}-04-01,\n",
        )
        assert done.status_code == 200 and "2 members joined from members.csv" in done.text
        names = sorted(m["name"] for m in (await request(nc, ListMembers()))["members"])
        assert names == ["Bury Council", "Salford Council", "Wigan Council"]


async def test_an_invoice_is_offered_as_the_document_the_member_receives(
    site: Site, nc: Client
) -> None:
    await request(nc, RunInvoicing(year=YEAR))

    async def number() -> str | None:
        member = await request(nc, ShowMember(member="Wigan Council"))
        return member["documents"][0]["number"] if member["documents"] else None

    invoice = await eventually(number, what="Wigan's invoice")
    async with staff_client(site, FINANCE) as client:
        page = await client.get(f"/office/invoices/{invoice}")
        assert f'href="/office/invoices/{invoice}/document.pdf"' in page.text
        assert f'href="/office/invoices/{invoice}/document.html"' in page.text

        pdf = await client.get(f"/office/invoices/{invoice}/document.pdf")
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.headers["content-disposition"] == f'attachment; filename="{invoice}.pdf"'
        assert pdf.content.startswith(b"%PDF")
        text = pdf_text(pdf.content)
        assert invoice in text and "Wigan Council" in text

        shown = await client.get(f"/office/invoices/{invoice}/document.html")
        assert shown.status_code == 200 and shown.headers["content-type"].startswith("text/html")
        assert invoice in shown.text and "<style>" in shown.text
        # Its own policy, not the site's as well: styles as printed, nothing that runs.
        [policy] = shown.headers.get_list("content-security-policy")
        assert "style-src 'unsafe-inline'" in policy and "script-src" not in policy
        assert "default-src 'none'" in policy and "sandbox" in policy
        assert shown.headers["x-frame-options"] == "DENY"

        assert (await client.get(f"/office/invoices/{invoice}/document.txt")).status_code == 404
        assert (await client.get("/office/invoices/NO-SUCH/document.pdf")).status_code == 404
        # The site's own pages keep the site's policy.
        [site_policy] = page.headers.get_list("content-security-policy")
        assert "script-src 'self'" in site_policy
