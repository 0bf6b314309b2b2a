"""The alerts officer's pages over HTTP, against the real services: contacts found, their
topics and consents changed, a contact added; a broadcast previewed (with and without
the composer's script), sent, followed and delivered; the deliveries with a failed one
first, and resent. Every rule, count and rendering is the notifications service's."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
from nats.aio.client import Client

from contracts.notifications_v1 import AddContact, ShowContact
from contracts.subscriptions_v1 import JoinMember
from kernel.commands import request
from kernel.settings import Settings
from tests.conftest import eventually
from tests.notifications_support import quick, scripted_smtp
from tests.web.test_office_access import add_staff, problem_text, staff_client
from tests.web_support import Site, form_token, running_site
from vestry.demo_invoicing import current_financial_year
from vestry.mailcapture import read_mailbox

COMMS = "carol.comms@partnership.example.org"
NOTICE = {
    "headline": "Bin collections move a day later next week",
    "body": "Because of the bank holiday, every collection moves one day later.\n\nSaturday too.",
}


async def add_contacts(nc: Client) -> None:
    await request(
        nc,
        AddContact(
            email="priya.shah@wigan.example.gov.uk",
            name="Priya Shah",
            organisation="Wigan Council",
            mobile="07400 100001",
            sms_consent=True,
            topics=["waste_and_recycling"],
        ),
    )
    await request(
        nc,
        AddContact(
            email="sam.lee@bolton.example.gov.uk",
            name="Sam Lee",
            organisation="Bolton Council",
            topics=["waste_and_recycling", "warp"],
        ),
    )


@pytest.fixture
async def mail_dir(tmp_path: Path) -> Path:
    return tmp_path / "smtp"


@pytest.fixture
async def site(settings: Settings, nc: Client, mail_dir: Path) -> AsyncIterator[Site]:
    """The whole stack, its mail going to a server that refuses the first recipient it is
    given (a mailbox that does not exist yet) and takes the rest."""
    async with (
        scripted_smtp(mail_dir, ["550 5.1.1 No such mailbox"]) as (port, _),
        running_site(quick(settings, smtp_port=port)) as running,
    ):
        await add_staff(nc, COMMS, "comms")
        await add_contacts(nc)
        yield running


def contact_id(page_text: str, email: str) -> str:
    found = re.search(rf'href="/office/alerts/contacts/([^"]+)">{re.escape(email)}<', page_text)
    assert found, f"{email} not listed"
    return found.group(1)


async def test_contacts_are_found_and_their_topics_consents_and_details_changed(
    site: Site, nc: Client
) -> None:
    async with staff_client(site, COMMS) as client:
        home = await client.get("/office/alerts")
        assert home.status_code == 200 and "Send a broadcast" in home.text

        every = await client.get("/office/alerts/contacts")
        assert every.status_code == 200
        assert "priya.shah@wigan.example.gov.uk" in every.text
        assert "sam.lee@bolton.example.gov.uk" in every.text
        found = await client.get("/office/alerts/contacts?q=WIGAN")
        assert "2 contacts" not in found.text and "1 contact on this page" in found.text
        warp = await client.get("/office/alerts/contacts?topic=warp")
        assert "sam.lee@" in warp.text and "priya.shah@" not in warp.text
        # An edited address shows a page, never an error.
        assert (await client.get("/office/alerts/contacts?after=&topic=<x>")).status_code == 200

        sam = contact_id(every.text, "sam.lee@bolton.example.gov.uk")
        page = await client.get(f"/office/alerts/contacts/{sam}")
        assert page.status_code == 200 and "Bolton Council" in page.text
        assert re.search(r'value="warp" checked', page.text)

        csrf = await form_token(client, f"/office/alerts/contacts/{sam}")
        # SMS consent without a mobile: the service's refusal, on the consents.
        no_mobile = await client.post(
            f"/office/alerts/contacts/{sam}/choices",
            data={"csrf_token": csrf, "channels": ["email", "sms"], "topics": ["warp"]},
        )
        assert no_mobile.status_code == 409
        assert "SMS consent needs a mobile number" in problem_text(no_mobile)

        changed = await client.post(
            f"/office/alerts/contacts/{sam}/choices",
            data={"csrf_token": csrf, "topics": ["warp", "newsletter"]},  # email withdrawn
        )
        assert changed.status_code == 303
        assert (
            "Their topics and consents are saved"
            in (await client.get(changed.headers["location"])).text
        )
        shown = await request(nc, ShowContact(contact="sam.lee@bolton.example.gov.uk"))
        assert shown["topics"] == ["newsletter", "warp"] and not shown["email_consent"]
        same = await client.post(
            f"/office/alerts/contacts/{sam}/choices",
            data={"csrf_token": csrf, "topics": ["warp", "newsletter"]},
        )
        assert "done=unchanged" in same.headers["location"]

        details = await client.get(f"/office/alerts/contacts/{sam}/details")
        assert details.status_code == 200 and 'value="Sam Lee"' in details.text
        saved = await client.post(
            f"/office/alerts/contacts/{sam}/details",
            data={
                "csrf_token": csrf,
                "name": "Samuel Lee",
                "organisation": "Bolton Council",
                "mobile": "07400 100002",
            },
        )
        assert saved.status_code == 303
        shown = await request(nc, ShowContact(contact=sam))
        assert (shown["name"], shown["mobile"]) == ("Samuel Lee", "+447400100002")
        assert shown["topics"] == ["newsletter", "warp"] and not shown["email_consent"]  # kept

        assert (await client.get("/office/alerts/contacts/new")).status_code == 200
        bad = await client.post(
            "/office/alerts/contacts/new",
            data={"csrf_token": csrf, "email": "not an address", "mobile": "12"},
        )
        assert bad.status_code == 400 and "Enter an email address" in problem_text(bad)
        refused = await client.post(
            "/office/alerts/contacts/new",
            data={
                "csrf_token": csrf,
                "email": "jo@example.org",
                "mobile": "12",
                "channels": "email",
            },
        )
        assert refused.status_code == 409 and re.search(r'id="mobile-error"', refused.text)
        known = await client.post(
            "/office/alerts/contacts/new",
            data={"csrf_token": csrf, "email": "Priya.Shah@wigan.example.gov.uk"},
        )
        assert known.status_code == 409 and "already a contact" in known.text
        added = await client.post(
            "/office/alerts/contacts/new",
            data={
                "csrf_token": csrf,
                "email": "jo@example.org",
                "name": "Jo Patel",
                "channels": "email",
                "topics": "digital",
            },
        )
        assert added.status_code == 303
        assert "The contact is added" in (await client.get(added.headers["location"])).text
        jo = await request(nc, ShowContact(contact="jo@example.org"))
        assert jo["topics"] == ["digital"] and jo["email_consent"] and not jo["sms_consent"]

        assert (await client.get("/office/alerts/contacts/no-such-person")).status_code == 404

        # Someone the partnership knows from what they did: a member's billing contact.
        await request(
            nc,
            JoinMember(
                name="Bury Council",
                tier="district",
                billing_email="ap@bury.example.gov.uk",
                joined_on=date(current_financial_year(), 4, 1),
            ),
        )

        async def learnt() -> str | None:
            listed = await client.get("/office/alerts/contacts?q=bury")
            return listed.text if "ap@bury.example.gov.uk" in listed.text else None

        bury = contact_id(
            await eventually(learnt, what="the billing contact learnt"), "ap@bury.example.gov.uk"
        )
        their_page = await client.get(f"/office/alerts/contacts/{bury}")
        assert their_page.status_code == 200
        assert "Learnt from what they did: seen in a membership" in their_page.text


async def test_a_broadcast_is_previewed_sent_followed_and_a_failed_delivery_resent(
    site: Site, nc: Client, mail_dir: Path
) -> None:
    async with staff_client(site, COMMS) as client:
        composer = await client.get("/office/alerts/broadcasts/new?topic=waste_and_recycling")
        assert composer.status_code == 200
        assert 'value="broadcast"' in composer.text
        assert 'value="security_advisory"' not in composer.text  # needs more than it writes
        assert 'src="/static/office/compose.js"' in composer.text

        csrf = await form_token(client, "/office/alerts/broadcasts/new")
        sending = re.search(r'name="sending_id" value="([^"]+)"', composer.text)
        assert sending
        fields = {
            "csrf_token": csrf,
            "sending_id": sending.group(1),
            "topic": "waste_and_recycling",
            "channels": ["email", "sms"],
            "template": "broadcast",
            **NOTICE,
        }
        # Without the script: the Preview button sends the form and the page comes back.
        previewed = await client.post(
            "/office/alerts/broadcasts/new", data={**fields, "action": "preview"}
        )
        assert previewed.status_code == 200
        assert "It would reach <strong>2 by email</strong> and <strong>1 by SMS</strong>" in (
            previewed.text
        )
        assert f'<span class="govuk-!-font-weight-bold">Subject:</span> {NOTICE["headline"]}' in (
            previewed.text
        )
        assert 'sandbox="" srcdoc="' in previewed.text and "&lt;h2&gt;Bin collections" in (
            previewed.text
        )
        assert "The SMS takes 1 part" in previewed.text
        # With it: the same from the preview endpoint, as JSON, as the message is typed.
        typed = await client.post(
            "/office/alerts/broadcasts/preview",
            data={**fields, "headline": "✓" * 200},  # UCS-2 and far too long
        )
        assert typed.status_code == 200 and typed.headers["cache-control"] == "no-store"
        answer = typed.json()
        assert re.match(
            r"The SMS takes \d parts \(\d+ characters as sent in Unicode", answer["count"]
        )
        assert "more than the 2 allowed" in answer["count"]
        assert 'id="sms-text"' in answer["preview"]
        no_token = await client.post("/office/alerts/broadcasts/preview", data=NOTICE)
        assert no_token.status_code == 403

        missing = await client.post(
            "/office/alerts/broadcasts/new",
            data={**fields, "headline": "", "channels": [], "action": "send"},
        )
        assert missing.status_code == 400
        assert "Enter a headline" in problem_text(missing)
        assert "Select how it goes" in problem_text(missing)
        too_long = await client.post(
            "/office/alerts/broadcasts/new",
            data={**fields, "headline": "€" * 200, "action": "send"},
        )
        assert too_long.status_code == 409 and "the limit is 2" in problem_text(too_long)
        renewed = re.search(r'name="sending_id" value="([^"]+)"', too_long.text)
        assert renewed and renewed.group(1) != fields["sending_id"]  # a refused send was answered
        fields["sending_id"] = renewed.group(1)

        sent = await client.post("/office/alerts/broadcasts/new", data={**fields, "action": "send"})
        assert sent.status_code == 303
        broadcast_url = sent.headers["location"]
        # Send pressed again (a double click without the script, the form resubmitted):
        # the same command, answered with the same broadcast, sent once.
        again = await client.post(
            "/office/alerts/broadcasts/new", data={**fields, "action": "send"}
        )
        assert again.status_code == 303 and again.headers["location"] == broadcast_url
        going = await client.get(broadcast_url)
        assert going.status_code == 200 and 'src="/static/office/refresh.js"' in going.text

        async def complete() -> str | None:
            page = await client.get(broadcast_url)
            return page.text if "Broadcast complete" in page.text else None

        done = await eventually(complete, what="the broadcast complete")
        assert "2 sent, 1 failed" in done and "data-vestry-refresh" not in done
        mails = read_mailbox(mail_dir)
        assert [m.subject for m in mails] == [NOTICE["headline"]]  # one refused: no mailbox

        today = await client.get("/office/")  # the failure waits on Today too
        watch = re.search(r'<ul[^>]*id="deliveries-to-watch".*?</ul>', today.text, re.S)
        assert watch and 'href="/office/alerts/deliveries?status=failed">1 failed' in watch[0]
        assert "quiet hours" not in watch[0]

        ledger = await client.get("/office/alerts/deliveries")
        assert ledger.status_code == 200
        rows = re.findall(r'<tr class="govuk-table__row">(.*?)</tr>', ledger.text, re.S)
        statuses = [
            re.search(r"govuk-tag--(\w+)", row).group(1) for row in rows if "govuk-tag" in row
        ]  # type: ignore[union-attr]
        assert statuses == ["red", "green", "green"]  # the failed one first
        assert "550" in rows[1] or "550" in ledger.text
        failed_id = re.search(r"/office/alerts/deliveries/([^/]+)/resend", ledger.text)
        assert failed_id
        csrf = await form_token(client, "/office/alerts/deliveries")
        resent = await client.post(
            f"/office/alerts/deliveries/{failed_id.group(1)}/resend",
            data={"csrf_token": csrf, "back": "/office/alerts/deliveries?status=failed"},
        )
        assert resent.status_code == 303
        assert resent.headers["location"] == "/office/alerts/deliveries?status=failed&done=resent"
        await eventually(lambda: len(read_mailbox(mail_dir)) == 2, what="the resent email")
        again = await client.post(
            f"/office/alerts/deliveries/{failed_id.group(1)}/resend",
            data={"csrf_token": csrf, "back": "https://elsewhere.example/"},
        )
        assert again.status_code in (303, 409)  # sent by now: not failed any more
        assert (await client.get("/office/alerts/deliveries?status=failed")).status_code == 200
        assert (await client.get("/office/alerts/deliveries?after=nonsense")).status_code == 303
        assert (await client.get("/office/alerts/broadcasts/no-such-one")).status_code == 404
