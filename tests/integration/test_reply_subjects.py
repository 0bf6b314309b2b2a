"""A request can name any reply subject; a service answers only a client's inbox, so
nobody can steer its answer into a stream, where it would read as a fact."""

from __future__ import annotations

import asyncio
from datetime import date

from nats.aio.client import Client

from contracts import Envelope
from contracts.events_v1 import BookPlace, ListEvents
from contracts.system_v1 import health_subject
from kernel.commands import answerable, request
from kernel.settings import Settings
from tests.events_support import WallClock, events_service, fact_count, published_event

STEERED = "subscriptions.invoice.issued"  # a subject the SUBSCRIPTIONS stream stores


async def _steered(nc: Client) -> list[bytes]:
    caught: list[bytes] = []

    async def catch(msg) -> None:  # type: ignore[no-untyped-def]
        caught.append(msg.data)

    await nc.subscribe(STEERED, cb=catch)
    await nc.flush()
    return caught


async def test_a_request_naming_a_stream_subject_as_its_reply_is_dropped_unanswered(
    settings: Settings, nc: Client
) -> None:
    async with events_service(settings, WallClock(date(2027, 1, 1))):
        event_id = await published_event(nc)
        caught = await _steered(nc)
        booking = BookPlace(event_id=event_id, name="Eve Mallory", email="eve@example.org")
        for subject, body in (
            (ListEvents.SUBJECT, Envelope.wrap(ListEvents()).to_bytes()),
            (BookPlace.SUBJECT, Envelope.wrap(booking).to_bytes()),  # the batched writer
            (health_subject("events"), b"{}"),
        ):
            await nc.publish(subject, body, reply=STEERED)
        await nc.flush()
        await asyncio.sleep(1)

        assert caught == []
        listed = await request(nc, ListEvents())  # an inbox is answered as ever
        assert [e["event_id"] for e in listed["events"]] == [event_id]
        assert await fact_count(nc, "events.booking.confirmed") == 0  # nor booked


def test_only_inboxes_are_answerable() -> None:
    assert answerable("_INBOX.abc.1") and answerable("_INBOX_web.abc.1") and answerable(None)
    assert not answerable("subscriptions.invoice.issued") and not answerable("_INBOXES.x")
