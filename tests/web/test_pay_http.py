"""Paying an invoice online through the public site, over HTTP, against the real services
and the GOV.UK Pay stand-in: the signed link, the card page and back, the provider's
signed webhooks; what a stranger with a changed link or a forged webhook gets."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest
from nats.aio.client import Client

from kernel import links
from kernel.settings import Settings
from tests.pay_support import card_books, invoiced_member, pay_stand_in, paying
from tests.web_support import CSRF, Site, running_site
from vestry.natsserver import free_port
from vestry.paystandin import DECLINED_CARD, TEST_CARD, PayStandIn, sign


@dataclass
class Paying:
    site: Site
    stand_in: PayStandIn
    settings: Settings


@pytest.fixture
async def paying_site(settings: Settings) -> AsyncIterator[Paying]:
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/pay/webhook"
    async with pay_stand_in(webhook_url=webhook, auto_webhooks=False) as stand_in:
        settings = paying(settings, stand_in, public_url=f"http://127.0.0.1:{port}")
        async with running_site(settings, port=port) as site:
            yield Paying(site, stand_in, settings)


def pay_link(paying: Paying, number: str) -> str:
    return links.pay_url(paying.site.url, paying.settings.link_secret, number)


async def to_the_card_page(client: httpx.AsyncClient, link: str) -> str:
    """Open the pay page and press its button; where the site sends the person."""
    page = await client.get(link)
    assert page.status_code == 200, page.text
    token = CSRF.search(page.text)
    assert token, "the pay page has no form"
    started = await client.post(link, data={"csrf_token": token.group(1)})
    assert started.status_code == 303, started.text
    return started.headers["location"]


async def on_the_card_page(card_page: str, action: str = "pay", card: str = TEST_CARD) -> str:
    """What the person does on the provider's card page; where it sends them back."""
    async with httpx.AsyncClient(timeout=30) as browser:
        assert (await browser.get(card_page)).status_code == 200
        done = await browser.post(card_page, data={"action": action, "card_number": card})
    assert done.status_code == 303
    return done.headers["location"]


def payment_of(stand_in: PayStandIn, card_page: str) -> str:
    (payment,) = [p for p in stand_in.payments.values() if card_page.endswith(p.token)]
    return payment.payment_id


@pytest.mark.parametrize(
    "arrive",
    [["return"], ["webhook"], ["return", "webhook", "webhook", "return"], ["at once"]],
    ids=["return", "webhook", "both-twice", "at-once"],
)
async def test_a_card_payment_is_recorded_once_whether_the_return_or_the_webhook_arrives(
    paying_site: Paying, nc: Client, arrive: list[str]
) -> None:
    site, stand_in = paying_site.site, paying_site.stand_in
    invoice = await invoiced_member(nc)
    number, gross = invoice["number"], invoice["gross"]
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as client:
        link = pay_link(paying_site, number)
        page = await client.get(link)
        assert "Pay your invoice" in page.text and "£2,000.00" in page.text
        card_page = await to_the_card_page(client, link)
        assert card_page.startswith(f"{stand_in.url}/secure/")
        payment_id = payment_of(stand_in, card_page)
        back = await on_the_card_page(card_page)
        assert back.startswith(f"{site.url}/pay/{number}/done?s=")
        assert await card_books(site.subscriptions, number) == ("issued", 0, [], 0)

        async def the_return() -> None:
            answer = await client.get(back)
            assert answer.status_code == 200
            assert "Payment received" in answer.text and "paid in full" in answer.text

        async def the_webhook() -> None:
            assert await stand_in.send_webhook(payment_id, "card_payment_succeeded") == 200

        if arrive == ["at once"]:
            await asyncio.gather(
                *[the_return() for _ in range(3)], *[the_webhook() for _ in range(3)]
            )
        else:
            for each in arrive:
                await (the_return() if each == "return" else the_webhook())

        assert await card_books(site.subscriptions, number) == ("paid", gross, [gross], 1)
        after = await client.get(link)
        assert "This invoice is paid: there is nothing more to pay" in after.text
        assert 'name="csrf_token"' not in after.text  # no button to pay twice


@pytest.mark.parametrize(
    ("action", "card", "says"),
    [
        ("cancel", TEST_CARD, "You cancelled your payment"),
        ("pay", DECLINED_CARD, "Your card was not accepted"),
    ],
    ids=["cancelled", "declined"],
)
async def test_a_payment_that_did_not_go_through_says_so_and_records_nothing(
    paying_site: Paying, nc: Client, action: str, card: str, says: str
) -> None:
    site, stand_in = paying_site.site, paying_site.stand_in
    invoice = await invoiced_member(nc)
    number = invoice["number"]
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as client:
        card_page = await to_the_card_page(client, pay_link(paying_site, number))
        payment_id = payment_of(stand_in, card_page)
        back = await on_the_card_page(card_page, action, card)
        answer = await client.get(back)
        assert await stand_in.send_webhook(payment_id, "card_payment_failed") == 200

    assert answer.status_code == 200
    assert says in answer.text
    assert "No money was taken and nothing was recorded" in answer.text
    assert "Try paying again" in answer.text
    assert await card_books(site.subscriptions, number) == ("issued", 0, [], 0)


async def test_a_webhook_with_a_bad_signature_is_refused_and_records_nothing(
    paying_site: Paying, nc: Client
) -> None:
    site, stand_in = paying_site.site, paying_site.stand_in
    invoice = await invoiced_member(nc)
    number = invoice["number"]
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as client:
        card_page = await to_the_card_page(client, pay_link(paying_site, number))
        payment_id = payment_of(stand_in, card_page)
        await on_the_card_page(card_page)  # paid, but the person never comes back
        body = stand_in.webhook_body(payment_id, "card_payment_succeeded")

        forged = [
            (body, sign("another-secret-entirely-0123456789abcdef", body)),  # wrong key
            (body, ""),  # no signature
            (
                body.replace(b'"api_version": 1', b'"api_version": 2'),
                sign(stand_in.webhook_secret or "", body),
            ),
        ]
        for sent, signature in forged:
            answer = await client.post(
                "/pay/webhook",
                content=sent,
                headers={"Pay-Signature": signature, "Content-Type": "application/json"},
            )
            assert answer.status_code == 403, answer.text
            assert "does not match" in answer.text and "Nothing was done" in answer.text
        assert await card_books(site.subscriptions, number) == ("issued", 0, [], 0)
        # A genuine signature on a body whose state is made up: the provider is asked.
        made_up = body.replace(b'"status": "success"', b'"status": "failed"')
        assert made_up != body
        answer = await client.post(
            "/pay/webhook",
            content=made_up,
            headers={"Pay-Signature": sign(stand_in.webhook_secret or "", made_up)},
        )
        assert answer.status_code == 200 and answer.json()["outcome"] == "paid"
    assert await card_books(site.subscriptions, number) == (
        "paid",
        invoice["gross"],
        [invoice["gross"]],
        1,
    )


async def test_a_strangers_changed_link_shows_nothing_and_starts_nothing(
    paying_site: Paying, nc: Client
) -> None:
    site, stand_in = paying_site.site, paying_site.stand_in
    mine = await invoiced_member(nc, "Bury Council")
    theirs = await invoiced_member(nc, "Rochdale Council")
    link = pay_link(paying_site, mine["number"])
    signature = link.split("?s=")[1]
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as client:
        token = CSRF.search((await client.get(link)).text)
        assert token
        changed = [
            f"/pay/{theirs['number']}?s={signature}",  # my signature on their number
            f"/pay/{mine['number']}?s={signature[:-1]}0",
            f"/pay/{mine['number']}",
        ]
        for address in changed:
            page = await client.get(address)
            assert page.status_code == 400
            assert "This link does not work" in page.text
            assert "Rochdale" not in page.text and "Bury" not in page.text
            started = await client.post(address, data={"csrf_token": token.group(1)})
            assert started.status_code == 400
        assert ("POST", "/v1/payments") not in stand_in.requests

        card_page = await to_the_card_page(client, link)
        back = await on_the_card_page(card_page)
        attempt = back.split("&a=")[1]
        their_link = pay_link(paying_site, theirs["number"])
        their_signature = their_link.split("?s=")[1]
        for address in (
            f"/pay/{theirs['number']}/done?s={their_signature}&a={attempt}",  # not theirs
            f"/pay/{mine['number']}/done?s={signature}&a=not-an-attempt-of-anyone",
            f"/pay/{mine['number']}/done?s={signature}&a=<script>",
        ):
            page = await client.get(address)
            assert page.status_code == 400 and "This link does not work" in page.text
        # Without the form's token: refused, nothing started.
        before = len(stand_in.payments)
        assert (await client.post(link, data={})).status_code == 403
        assert len(stand_in.payments) == before
    assert await card_books(site.subscriptions, mine["number"]) == ("issued", 0, [], 0)


async def test_only_the_pay_page_lets_a_form_lead_to_the_card_pages(
    paying_site: Paying, nc: Client
) -> None:
    invoice = await invoiced_member(nc)
    async with httpx.AsyncClient(base_url=paying_site.site.url, timeout=30) as client:
        pay = await client.get(pay_link(paying_site, invoice["number"]))
        programme = await client.get("/events")
    (policy,) = pay.headers.get_list("content-security-policy")
    origin = paying_site.stand_in.url
    assert f"form-action 'self' {origin};" in policy
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "form-action 'self';" in programme.headers["content-security-policy"]
    assert urlsplit(origin).netloc not in programme.headers["content-security-policy"]


async def test_webhooks_are_refused_where_no_signing_secret_is_set(
    settings: Settings, nc: Client
) -> None:
    async with pay_stand_in() as stand_in:
        settings = paying(settings, stand_in, pay_webhook_secret=None)
        async with (
            running_site(settings) as site,
            httpx.AsyncClient(base_url=site.url, timeout=30) as client,
        ):
            answer = await client.post(
                "/pay/webhook", content=b"{}", headers={"Pay-Signature": "0"}
            )
    assert answer.status_code == 404
    assert re.search("not set up", answer.text)
