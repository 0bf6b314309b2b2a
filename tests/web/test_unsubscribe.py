"""The unsubscribe link in a broadcast works, over HTTP against the public site:
GET only asks, POST (the button, or a mail client's RFC 8058 one-click request)
takes the person off that topic, a changed link is refused, and the next
broadcast does not reach them. A link forged from someone's address (the id anyone
could compute from it, signed with the example key) takes nobody off anything."""

from __future__ import annotations

import httpx
import pytest
from nats.aio.client import Client

from contracts.envelope import derived_message_id
from contracts.notifications_v1 import (
    AddContact,
    BroadcastCompleted,
    SendBroadcast,
    ShowContact,
    Unsubscribe,
)
from kernel import links
from kernel.commands import CommandFailed, request
from kernel.settings import Settings
from tests.conftest import Mailbox, eventually
from tests.notifications_support import quick, stream_facts
from tests.web_support import running_site
from vestry.natsserver import free_port

OFFICER = "officer@bury.example.gov.uk"
# A mail client's one-click request (RFC 8058): the body List-Unsubscribe=One-Click, as a form.
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def mail_client() -> httpx.AsyncClient:
    """What follows a link from a mail: redirects are followed, and no cookie is kept, so
    every request carries only what the link does."""
    client = httpx.AsyncClient(follow_redirects=True)

    async def forget_cookies(response: httpx.Response) -> None:
        client.cookies.clear()

    client.event_hooks["response"].append(forget_cookies)
    return client


async def broadcast(nc: Client, headline: str) -> dict:
    return await request(
        nc,
        SendBroadcast(
            topic="warp",
            channels=["email"],
            template="broadcast",
            data={"headline": headline, "body": "Patch now."},
        ),
    )


async def test_one_click_unsubscribe_over_http(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    port = free_port()
    settings = quick(settings, public_url=f"http://127.0.0.1:{port}")
    async with running_site(settings, port=port), mail_client() as web:
        await request(
            nc, AddContact(email=OFFICER, name="Duty officer", topics=["warp", "digital"])
        )
        await request(nc, AddContact(email="other@wigan.example.gov.uk", topics=["warp"]))
        await broadcast(nc, "First advisory")
        await eventually(lambda: len(mailbox.mails()) == 2, what="the first advisory")
        (mail,) = [m for m in mailbox.mails() if m.to == OFFICER]
        link = mail.message["List-Unsubscribe"].strip("<>")
        assert link.startswith(f"http://127.0.0.1:{port}/unsubscribe?")
        # As mail clients read it: the raw header is the link itself, not an encoded word.
        assert f"List-Unsubscribe: <{link}>" in mail.path.read_text()

        asked = await web.get(link)  # a scanner following the link changes nothing
        assert asked.status_code == 200 and 'method="post"' in asked.text
        assert "Stop receiving WARP security advisories?" in asked.text
        assert (await request(nc, ShowContact(contact=OFFICER)))["topics"] == ["digital", "warp"]

        forged = await web.post(link.replace("t=warp", "t=digital"))
        assert forged.status_code == 400 and "does not work" in forged.text
        damaged = await web.post(link[:-1])
        assert damaged.status_code == 400
        assert (await request(nc, ShowContact(contact=OFFICER)))["topics"] == ["digital", "warp"]

        for _ in range(2):  # the one-click request, then again: harmless
            done = await web.post(link, data=ONE_CLICK)
            assert done.status_code == 200 and "You are unsubscribed" in done.text
        assert (await request(nc, ShowContact(contact=OFFICER)))["topics"] == ["digital"]

        second = await broadcast(nc, "Second advisory")
        assert second["recipients"] == 1
        await eventually(lambda: _completed(nc, 2), what="the second broadcast completed")
    assert [m.to for m in mailbox.mails()].count(OFFICER) == 1


async def test_a_link_forged_from_an_address_unsubscribes_nobody(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    port = free_port()
    settings = quick(settings, public_url=f"http://127.0.0.1:{port}")
    assert settings.unsubscribe_secret == "change-me"  # the example key: the forger knows it
    async with running_site(settings, port=port), mail_client() as web:
        await request(nc, AddContact(email=OFFICER, topics=["warp"]))
        guessed = derived_message_id("contact", OFFICER)  # what ids were: uuid5 of the address
        forged = links.unsubscribe_url(settings.public_url, "change-me", guessed, "warp")
        answer = await web.post(forged, data=ONE_CLICK)
        assert answer.status_code == 400 and "This link does not work" in answer.text
        shown = await request(nc, ShowContact(contact=OFFICER))
        assert shown["topics"] == ["warp"] and shown["contact_id"] != guessed
        with pytest.raises(CommandFailed) as refused:  # the service knows no such person
            await request(nc, Unsubscribe(contact=guessed, topics=["warp"]))
        assert refused.value.error.code == "not_found"

        await broadcast(nc, "Still subscribed")
        await eventually(lambda: len(mailbox.mails()) == 1, what="the advisory")
        (mail,) = mailbox.mails()
        assert mail.to == OFFICER
        real = mail.message["List-Unsubscribe"].strip("<>")
        assert f"c={shown['contact_id']}&" in real and f"c={guessed}" not in real


async def _completed(nc: Client, count: int) -> bool:
    return len(await stream_facts(nc, "NOTIFICATIONS", BroadcastCompleted.SUBJECT)) == count
