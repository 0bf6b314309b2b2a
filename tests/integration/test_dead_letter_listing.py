"""Each service lists its own dead letters over NATS (``<service>.cmd.dead_letters``), a
page at a time, and shows one with its message: for the back office, whose NATS user
may not read the DLQ stream."""

from __future__ import annotations

from nats.aio.client import Client

from contracts import Envelope
from contracts.system_v1 import DeadLettersReport, DeadLettersRequest, dead_letters_subject
from kernel.commands import request_raw
from kernel.deadletter import read_dead_letters
from kernel.settings import Settings
from tests.conftest import eventually
from tests.stack import membership_started, stack


async def listed(nc: Client, service: str, **asked: int) -> DeadLettersReport:
    body = DeadLettersRequest(**asked).model_dump_json().encode()
    reply = await request_raw(nc, dead_letters_subject(service), body)
    assert reply.ok, reply.error
    return DeadLettersReport.model_validate(reply.data)


async def test_each_service_lists_and_shows_only_its_own_dead_letters(
    settings: Settings, nc: Client
) -> None:
    async with stack(settings):
        bad = [
            Envelope.wrap(membership_started(n)).model_copy(update={"data": {"member_id": f"m{n}"}})
            for n in range(3)
        ]
        for envelope in bad:
            await nc.jetstream().publish("subscriptions.membership.started", envelope.to_bytes())
        # Events and notifications both hear MembershipStarted: each dead-letters all three.
        letters = await eventually(
            lambda: _when_six(nc), what="three dead letters in each of two services"
        )

        events = await listed(nc, "events")
        assert [v.sequence for v in events.letters] == sorted(
            letter.sequence for letter in letters if letter.headers["Vestry-Service"] == "events"
        )
        assert events.next is None
        first = events.letters[0]
        assert (first.service, first.kind, first.stream) == ("events", "invalid", "SUBSCRIPTIONS")
        assert first.subject == "subscriptions.membership.started" and first.deliveries == 1
        assert "membership_id" in first.error and first.message is None

        page = await listed(nc, "events", limit=2)
        rest = await listed(nc, "events", limit=2, after=page.next or 0)
        assert [v.sequence for v in page.letters + rest.letters] == [
            v.sequence for v in events.letters
        ]
        assert rest.next is None

        shown = await listed(nc, "events", sequence=first.sequence)
        [one] = shown.letters
        assert Envelope.from_bytes(one.message.encode()).id == bad[0].id  # type: ignore[union-attr]
        assert one.message_bytes == len(bad[0].to_bytes())

        notifications = await listed(nc, "notifications")
        assert {v.service for v in notifications.letters} == {"notifications"}
        assert len(notifications.letters) == 3
        # Another service's letter, or none at all: nothing shown.
        assert (await listed(nc, "notifications", sequence=first.sequence)).letters == []
        assert (await listed(nc, "events", sequence=99_999)).letters == []

        refused = await request_raw(nc, dead_letters_subject("events"), b'{"limit": 0}')
        assert not refused.ok and refused.error is not None and refused.error.field == "limit"


async def _when_six(nc: Client) -> list | None:  # type: ignore[type-arg]
    letters = await read_dead_letters(nc.jetstream())
    return letters if len(letters) == 6 else None
