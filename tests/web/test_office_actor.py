"""The staff member's identity travels with each command their pages send, and the facts
the acting service publishes because of it carry it into the streams."""

from __future__ import annotations

import json
from datetime import date

import httpx
from nats.aio.client import Client
from nats.aio.msg import Msg

from contracts import Envelope
from contracts.envelope import Actor
from contracts.subscriptions_v1 import InvoicePaid, ListMembers, RecordPayment
from kernel.settings import Settings
from tests.conftest import eventually
from tests.web.test_office_access import add_staff, billed_invoice, staff_client
from tests.web_support import form_token, running_site, upcoming_event
from vestry.demo_invoicing import current_financial_year


def test_an_envelope_without_an_actor_is_what_it_was_and_one_with_an_actor_names_them() -> None:
    plain = Envelope.wrap(ListMembers())
    assert "actor" not in json.loads(plain.to_bytes())
    assert Envelope.from_bytes(plain.to_bytes()).actor is None

    fiona = Actor(id="s-1", name="Fiona Finance", address="192.0.2.7")
    command = Envelope.wrap(ListMembers(), actor=fiona)
    wire = json.loads(command.to_bytes())
    assert wire["actor"] == {
        "kind": "staff",
        "id": "s-1",
        "name": "Fiona Finance",
        "address": "192.0.2.7",
    }
    assert Envelope.from_bytes(command.to_bytes()) == command

    # What a command causes names the same person, unless told otherwise.
    fact = Envelope.wrap(ListMembers(), causation=command)
    assert fact.actor == fiona and fact.causation_id == command.id
    assert Envelope.wrap(ListMembers(), causation=plain).actor is None


async def test_a_payment_recorded_in_the_office_names_who_recorded_it(
    settings: Settings, nc: Client
) -> None:
    async with running_site(settings) as site:
        number = await billed_invoice(nc)
        fiona = await add_staff(nc, "fiona.finance@partnership.example.org", "finance")
        seen: list[Envelope] = []

        async def overhear(msg: Msg) -> None:  # a second listener: the service still answers
            seen.append(Envelope.from_bytes(msg.data))

        listening = await nc.subscribe(RecordPayment.SUBJECT, cb=overhear)
        async with staff_client(site, "fiona.finance@partnership.example.org") as client:
            csrf = await form_token(client, f"/office/invoices/{number}/payment")
            recorded = await client.post(
                f"/office/invoices/{number}/payment",
                data={
                    "csrf_token": csrf,
                    "amount": "2,500.00",
                    "received_on-day": "3",
                    "received_on-month": "5",
                    "received_on-year": str(current_financial_year()),
                    "reference": "BACS 4471",
                },
            )
            assert recorded.status_code == 303
        await listening.unsubscribe()

        [command] = seen
        assert command.actor == Actor(
            id=fiona["staff_id"], name="Fiona Finance", address="127.0.0.1"
        )
        assert command.data["amount"]["amount_minor"] == 250_000
        assert command.data["received_on"] == date(current_financial_year(), 5, 3).isoformat()

        js = nc.jetstream()

        async def paid_fact() -> Envelope | None:
            subscription = await js.pull_subscribe(InvoicePaid.SUBJECT, stream="SUBSCRIPTIONS")
            try:
                [msg] = await subscription.fetch(1, timeout=1)
            except Exception:
                return None
            finally:
                await subscription.unsubscribe()
            return Envelope.from_bytes(msg.data)

        fact = await eventually(paid_fact, what="InvoicePaid in the SUBSCRIPTIONS stream")
        assert fact.causation_id == command.id
        assert fact.actor is not None and fact.actor.name == "Fiona Finance"
        assert fact.actor.id == fiona["staff_id"]


async def test_pages_that_only_read_name_the_reader_and_public_pages_name_nobody(
    settings: Settings, nc: Client
) -> None:
    async with running_site(settings) as site:
        event_id = await upcoming_event(nc)
        fiona = await add_staff(nc, "fiona.finance@partnership.example.org", "finance")
        seen: list[Envelope] = []

        async def overhear(msg: Msg) -> None:
            seen.append(Envelope.from_bytes(msg.data))

        listening = await nc.subscribe(ListMembers.SUBJECT, cb=overhear)
        async with (
            staff_client(site, "fiona.finance@partnership.example.org") as client,
            httpx.AsyncClient(base_url=site.url, timeout=30) as stranger,
        ):
            assert (await client.get("/office/members")).status_code == 200
            assert (await stranger.get(f"/events/{event_id}/book")).status_code == 200
        await listening.unsubscribe()
        assert [e.actor.id if e.actor else None for e in seen] == [fiona["staff_id"], None]
