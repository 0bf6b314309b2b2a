"""The operator's pages over HTTP, against the real services: each service's health and
its consumers' lag, the dead letters of every service listed and one shown, and one
sent back to the service it failed in, recorded as the staff member's."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.aio.client import Client

from contracts import Envelope
from contracts.subscriptions_v1 import MembershipStarted
from kernel.applier import Incoming
from kernel.deadletter import DeadLetter, Failure, dead_letter, read_dead_letters
from kernel.settings import Settings
from tests.conftest import eventually
from tests.notifications_support import stream_facts
from tests.stack import membership_started, membership_views
from tests.web.test_office_access import add_staff, staff_client
from tests.web_support import Site, form_token, running_site

OPERATOR = "otto.operator@partnership.example.org"


@pytest.fixture
async def site(settings: Settings, nc: Client) -> AsyncIterator[Site]:
    async with running_site(settings) as running:
        await add_staff(nc, OPERATOR, "operator")
        yield running


async def invalid_fact(nc: Client, number: int) -> Envelope:
    """A MembershipStarted missing its fields: every service that reads it dead-letters it
    at once, as tests/integration/test_dead_letters.py makes one."""
    bad = Envelope.wrap(membership_started(number)).model_copy(
        update={"data": {"member_id": f"m-{number}"}}
    )
    await nc.jetstream().publish(MembershipStarted.SUBJECT, bad.to_bytes())
    return bad


async def failed_in_events(nc: Client, number: int) -> None:
    """A good MembershipStarted, dead-lettered by events as a handler that failed on it
    (a bug since fixed) would have: it applies when it is redriven."""
    fact = Envelope.wrap(membership_started(number))
    item = Incoming(
        data=fact.to_bytes(),
        subject=MembershipStarted.SUBJECT,
        stream="SUBSCRIPTIONS",
        sequence=10_000 + number,
        deliveries=3,
    )
    await dead_letter(
        nc.jetstream(),
        item,
        service="events",
        consumer="events-subscriptions",
        failure=Failure("handler", "RuntimeError: the read model's table is locked"),
    )


async def letters(nc: Client, count: int) -> list[DeadLetter] | None:
    found = await read_dead_letters(nc.jetstream())
    return found if len(found) == count else None


def listed(page_text: str) -> list[dict[str, Any]]:
    table = re.search(r'<table[^>]*id="dead-letters".*?</table>', page_text, re.S)
    assert table, "no dead letters listed"
    return [
        {"href": href, "service": service}
        for href, service in re.findall(
            r'href="(/office/operations/dead-letters/(\w+)/\d+)"', table.group(0)
        )
    ]


async def test_an_operator_sees_the_services_and_redrives_a_dead_letter(
    site: Site, nc: Client
) -> None:
    await invalid_fact(nc, 1)  # events and notifications both read it: two dead letters
    await eventually(lambda: letters(nc, 2), what="two dead letters")
    await failed_in_events(nc, 2)
    async with staff_client(site, OPERATOR) as client:
        page = await client.get("/office/operations")
        assert page.status_code == 200
        for service in ("subscriptions", "events", "notifications"):
            assert f'<th scope="row" class="govuk-table__header">{service}</th>' in page.text
        assert "events-subscriptions" in page.text and "notifications-events" in page.text
        assert "Not answering" not in page.text

        today = await client.get("/office/")  # Today says where they wait
        watch = re.search(r'<ul[^>]*id="letters-to-watch".*?</ul>', today.text, re.S)
        assert watch and "events: 2 dead letters" in watch[0]
        assert "notifications: 1 dead letter<" in watch[0] and "subscriptions" not in watch[0]
        assert 'href="/office/operations/dead-letters"' in today.text

        every = await client.get("/office/operations/dead-letters")
        assert every.status_code == 200
        rows = listed(every.text)
        assert sorted(r["service"] for r in rows) == ["events", "events", "notifications"]
        fixed = rows[-1]["href"]  # the newest: the one a fixed bug had failed
        shown = await client.get(fixed)
        assert shown.status_code == 200
        assert "RuntimeError: the read model&#39;s table is locked" in shown.text
        assert "membership_id" in shown.text  # the message itself

        views_before = await membership_views(site.events)
        csrf = await form_token(client, fixed)
        redriven = await client.post(f"{fixed}/redrive", data={"csrf_token": csrf})
        assert redriven.status_code == 303
        outcome = await client.get(redriven.headers["location"])
        assert "The dead letter was applied" in outcome.text
        assert len(listed(outcome.text)) == 2
        assert await membership_views(site.events) == views_before + 1

        async def recorded() -> list[Envelope]:
            return [e for e in await stream_facts(nc, "OPS") if e.data["action"] == "redrive"]

        [record] = await eventually(recorded, what="the redrive in the audit stream")
        assert record.data["service"] == "events"
        assert (record.data["by"]["kind"], record.data["by"]["name"]) == ("staff", "Otto Operator")

        # The invalid one fails again: back among them, its count raised.
        invalid = rows[0]["href"]
        again = await client.post(f"{invalid}/redrive", data={"csrf_token": csrf})
        assert "It failed again" in (await client.get(again.headers["location"])).text
        remaining = await read_dead_letters(nc.jetstream())
        assert len(remaining) == 2 and max(letter.deliveries for letter in remaining) == 2

        assert (await client.get(invalid)).status_code == 404  # gone: it has a new number
        assert (await client.get("/office/operations/dead-letters/web/1")).status_code == 404
        assert (await client.get("/office/operations/dead-letters/events/x")).status_code == 404
        assert (await client.get("/office/operations/dead-letters/events/0")).status_code == 404
        assert (await client.get("/office/operations/dead-letters?after=junk")).status_code == 200
