"""Messages that cannot be handled land in the DLQ stream, with why and where from."""

from __future__ import annotations

import itertools
import time

from nats.aio.client import Client

from contracts import Envelope
from contracts.subscriptions_v1 import MembershipStarted
from kernel.applier import Incoming
from kernel.consumer import HandlerContext
from kernel.deadletter import Failure, dead_letter, read_dead_letters
from kernel.runtime import Service
from kernel.settings import Settings
from services.events.app import MIGRATIONS
from services.events.handlers import on_membership_started
from tests.conftest import eventually
from tests.stack import membership_started, membership_views, stack


async def publish(nc: Client, envelope_or_bytes: Envelope | bytes) -> int:
    raw = (
        envelope_or_bytes if isinstance(envelope_or_bytes, bytes) else envelope_or_bytes.to_bytes()
    )
    ack = await nc.jetstream().publish(MembershipStarted.SUBJECT, raw)
    return ack.seq


async def test_invalid_fact_is_dead_lettered_at_once_and_the_next_is_applied(
    settings: Settings, nc: Client
) -> None:
    async with stack(settings) as (_, events, _n):
        bad = Envelope.wrap(membership_started(1)).model_copy(update={"data": {"member_id": "m-1"}})
        bad_seq = await publish(nc, bad)
        await publish(nc, Envelope.wrap(membership_started(2)))

        await eventually(lambda: membership_views(events), what="the next fact applied")
        letters = await eventually(lambda: _letters_from(nc, "events-subscriptions"))
        assert len(letters) == 1
        letter = letters[0]
        assert letter.kind == "invalid"
        assert "membership_id" in letter.error and "Field required" in letter.error
        assert letter.original_stream == "SUBSCRIPTIONS"
        assert letter.original_sequence == bad_seq
        assert letter.deliveries == 1  # not retried: retrying cannot fix it
        assert Envelope.from_bytes(letter.data).id == bad.id  # the original, byte for byte
        assert await membership_views(events) == 1


async def test_malformed_message_is_dead_lettered(settings: Settings, nc: Client) -> None:
    async with stack(settings) as (_, events, _n):
        seq = await publish(nc, b"{not json")
        await publish(nc, Envelope.wrap(membership_started(3)))
        letters = await eventually(lambda: _letters_from(nc, "events-subscriptions"))
        assert letters[0].kind == "malformed"
        assert letters[0].original_sequence == seq
        assert letters[0].data == b"{not json"
        await eventually(lambda: membership_views(events))


async def test_failing_handler_is_retried_with_backoff_then_dead_lettered(
    settings: Settings, nc: Client, streams: None
) -> None:
    attempts: list[float] = []

    async def broken(fact: MembershipStarted, ctx: HandlerContext) -> None:
        attempts.append(time.monotonic())
        raise RuntimeError("the read model's table is locked")

    probe = Service("probe", migrations_dir=MIGRATIONS, settings=settings)
    probe.consume(MembershipStarted)(broken)
    async with probe.running():
        seq = await publish(nc, Envelope.wrap(membership_started(4)))
        letters = await eventually(lambda: _letters_from(nc, "probe-subscriptions"), timeout=20)

    assert len(attempts) == settings.max_deliver == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.2 * 0.9 and gaps[1] >= 0.4 * 0.9  # the backoff grew
    letter = letters[0]
    assert letter.kind == "handler"
    assert "RuntimeError: the read model's table is locked" in letter.error
    assert letter.deliveries == 3
    assert letter.original_sequence == seq
    assert letter.subject == "dlq.probe.subscriptions.membership.started"
    assert probe.consumers[0].stats.applied == 0


async def test_handler_failing_once_is_applied_on_retry_once(
    settings: Settings, nc: Client, streams: None
) -> None:
    calls = 0

    async def flaky(fact: MembershipStarted, ctx: HandlerContext) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("store unreachable")

    probe = Service("probe", migrations_dir=MIGRATIONS, settings=settings)
    probe.consume(MembershipStarted)(flaky)
    async with probe.running():
        await publish(nc, Envelope.wrap(membership_started(5)))
        await eventually(lambda: probe.consumers[0].stats.applied == 1)
        assert probe.consumers[0].stats.retried == 1
    assert calls == 2
    assert await read_dead_letters(nc.jetstream()) == []


async def _letters_from(nc: Client, consumer: str) -> list:
    return [
        letter for letter in await read_dead_letters(nc.jetstream()) if letter.consumer == consumer
    ]


async def test_one_failing_fact_in_a_batch_leaves_the_others_applied_once(
    settings: Settings, nc: Client, streams: None
) -> None:

    async def fails_for_council_13(fact: MembershipStarted, ctx: HandlerContext) -> None:
        await on_membership_started(fact, ctx)
        if fact.member_name == "Council 13":
            raise ValueError("Council 13 cannot be priced")

    probe = Service("probe", migrations_dir=MIGRATIONS, settings=settings)
    probe.consume(MembershipStarted)(fails_for_council_13)
    await probe.prepare()  # declare the consumer before the facts arrive: one batch
    await probe.close()
    for number in range(10, 16):
        await publish(nc, Envelope.wrap(membership_started(number)))
    async with probe.running():
        letters = await eventually(lambda: _letters_from(nc, "probe-subscriptions"), timeout=20)
        views = await membership_views(probe)
        stats = probe.consumers[0].stats

    assert views == 5
    assert stats.applied == 5 and stats.dead_lettered == 1
    assert [letter.kind for letter in letters] == ["handler"]
    assert "Council 13 cannot be priced" in letters[0].error


async def test_a_fact_dead_lettered_again_on_a_later_delivery_is_stored_once(
    nc: Client, streams: None
) -> None:
    """When applying a fact that fails outlasts its ack deadline, JetStream may deliver it
    again while the consumer is still dead-lettering it (an outstanding pull takes the
    redelivery), and that delivery fails and is dead-lettered too: both copies carry one
    id, so the DLQ keeps one. A redrive that fails again stores a copy of its own."""
    js = nc.jetstream()
    failure = Failure("handler", "RuntimeError: the read model's table is locked")

    def delivery(count: int) -> Incoming:
        return Incoming(
            data=Envelope.wrap(membership_started(6)).to_bytes(),
            subject=MembershipStarted.SUBJECT,
            stream="SUBSCRIPTIONS",
            sequence=41,
            deliveries=count,
        )

    for count in (3, 4, 5):
        await dead_letter(
            js, delivery(count), service="probe", consumer="probe-subscriptions", failure=failure
        )
    [letter] = await _letters_from(nc, "probe-subscriptions")
    assert (letter.original_sequence, letter.deliveries) == (41, 3)

    await dead_letter(
        js,
        delivery(4),
        service="probe",
        consumer="probe-subscriptions",
        failure=failure,
        attempt="redrive-4",
    )
    assert len(await _letters_from(nc, "probe-subscriptions")) == 2
