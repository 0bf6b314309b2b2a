"""A fact committed with its state change reaches each consuming service once."""

from __future__ import annotations

import nats
from nats.aio.client import Client

from contracts.subscriptions_v1 import MembershipStarted
from kernel.runtime import Service
from kernel.settings import Settings
from tests.conftest import Mailbox, eventually
from tests.sealed import opened
from tests.stack import (
    deliveries_per_cause,
    delivery_count,
    inbox_count,
    join,
    membership_views,
    stack,
)


async def test_joining_member_is_welcomed_by_email_once(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    async with stack(settings) as (_, events, notifications):
        reply = await join(nc, 1)

        await eventually(lambda: len(mailbox.mails()) == 1, what="welcome mail captured")
        assert await membership_views(events) == 1
        # The ledger says sent a moment after the mail server has the message.
        await eventually(lambda: _sent_is(notifications, 1), what="the welcome recorded as sent")
        assert await delivery_count(notifications) == 1
        mail = mailbox.mails()[0]
        assert mail.to == "finance00001@council.example.gov.uk"
        assert "Borough Council 00001" in mail.subject
        assert "district tier" in mail.text()
        assert mail.message.get_body(preferencelist=("html",)) is not None
        assert reply["member_id"]


async def test_redelivered_fact_changes_nothing(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    async with stack(settings) as (_subscriptions, events, notifications):
        await join(nc, 1)
        await eventually(lambda: len(mailbox.mails()) == 1)
        js = nc.jetstream()
        original = await js.get_msg("SUBSCRIPTIONS", seq=1)
        # Publish the very same envelope again under another Nats-Msg-Id, as a
        # redelivery or an old copy past the dedupe window would arrive.
        await js.publish(original.subject, original.data, headers={"Nats-Msg-Id": "copy-1"})
        await js.publish(original.subject, original.data)

        await eventually(lambda: sum(c.stats.skipped for c in notifications.consumers) == 2)
        await eventually(lambda: sum(c.stats.skipped for c in events.consumers) == 2)
        assert await delivery_count(notifications) == 1
        assert await membership_views(events) == 1
        assert await inbox_count(notifications) == 1
        assert len(mailbox.mails()) == 1


async def test_relay_crash_after_publish_before_marking_sent_publishes_once(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    async with stack(settings) as (subscriptions, _, notifications):
        await subscriptions.stop_workers()  # the relay is not running: facts wait in the outbox
        for number in range(3):
            await join(nc, number)
        relay = subscriptions.relay
        assert relay is not None
        pending = await relay.next_batch()
        assert len(pending) == 6  # three MembershipStarted, and each join's audit record
        await relay.publish(pending)  # ... and the relay dies here, before mark_sent

        assert await relay.relay_once() == 6  # the restarted relay publishes them again
        js = nc.jetstream()
        info = await js.stream_info("SUBSCRIPTIONS")
        assert info.state.messages == 3  # JetStream dropped the copies by Nats-Msg-Id
        assert (await js.stream_info("OPS")).state.messages == 3
        await eventually(lambda: delivery_count(notifications, "sent"), what="deliveries sent")
        await eventually(lambda: len(mailbox.mails()) == 3)
        assert set((await deliveries_per_cause(notifications)).values()) == {1}


async def test_consumer_that_dies_before_acking_does_not_apply_twice(
    settings: Settings, nc: Client, monkeypatch
) -> None:
    import kernel.consumer

    async def die_before_ack(action) -> None:  # the process is gone: no ack ever leaves
        action.close()

    async with stack(settings) as (_subscriptions, events, _):
        await events.stop_workers()
        for number in range(5):
            await join(nc, number)
        js = nc.jetstream()
        await eventually(lambda: _count(js, "SUBSCRIPTIONS", 5), what="5 facts stored")
        [consumer] = [c for c in events.consumers if c.spec.stream == "SUBSCRIPTIONS"]
        with monkeypatch.context() as patch:
            patch.setattr(kernel.consumer, "_settle", die_before_ack)
            subscription = await nc.jetstream().pull_subscribe_bind(
                durable=consumer.spec.durable, stream=consumer.spec.stream
            )
            while consumer.stats.applied < 5:
                await consumer.process(await subscription.fetch(5, timeout=5))
        assert consumer.stats.applied == 5
        assert await membership_views(events) == 5

        await events.start_workers()  # a new process: JetStream redelivers after ack_wait
        await eventually(lambda: consumer.stats.skipped == 5, what="redelivered and skipped")
        assert consumer.stats.applied == 5
        assert await membership_views(events) == 5
        info = await js.consumer_info(consumer.spec.stream, consumer.spec.durable)
        assert info.num_pending == 0


async def test_fact_carries_its_envelope(settings: Settings, nc: Client) -> None:
    async with stack(settings):
        reply = await join(nc, 7)
        js = nc.jetstream()
        await eventually(lambda: stream_messages(js, "SUBSCRIPTIONS"))
        raw = await js.get_msg("SUBSCRIPTIONS", seq=1)
        assert b"example.gov.uk" not in raw.data  # the billing contact travels sealed
        envelope = await opened(nc, raw.data)
        fact = MembershipStarted.model_validate(envelope.data)
        assert raw.subject == MembershipStarted.SUBJECT
        assert raw.headers["Nats-Msg-Id"] == envelope.id
        assert envelope.causation_id is not None  # caused by the JoinMember command
        assert fact.member_id == reply["member_id"]
        assert envelope.occurred_at.utcoffset().total_seconds() == 0


async def _count(js: nats.js.JetStreamContext, stream: str, expected: int) -> bool:
    return await stream_messages(js, stream) == expected


async def stream_messages(js: nats.js.JetStreamContext, stream: str) -> int:
    return (await js.stream_info(stream)).state.messages


async def _sent_is(notifications: Service, expected: int) -> bool:
    return await delivery_count(notifications, "sent") == expected
