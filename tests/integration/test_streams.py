"""Streams and durable consumers are declared idempotently and follow the code."""

from __future__ import annotations

from nats.aio.client import Client
from nats.js.api import StorageType

from contracts.audit_v1 import ActionRecorded
from kernel.streams import (
    OPS_STREAM,
    PEOPLE_STREAM,
    STREAMS,
    ConsumerSpec,
    ensure_consumer,
    ensure_streams,
    streams_of,
)


async def test_declaring_twice_keeps_messages_and_sets_storage_and_dedupe(nc: Client) -> None:
    js = nc.jetstream()
    await ensure_streams(js, duplicate_window_s=600)
    await js.publish("subscriptions.membership.started", b"{}", headers={"Nats-Msg-Id": "a"})
    await ensure_streams(js, duplicate_window_s=3600)

    info = await js.stream_info("SUBSCRIPTIONS")
    assert info.state.messages == 1
    assert info.config.storage == StorageType.FILE
    assert info.config.duplicate_window == 3600
    assert info.config.max_age in (0, None)
    again = await js.publish(
        "subscriptions.membership.started", b"{}", headers={"Nats-Msg-Id": "a"}
    )
    assert again.duplicate


async def test_a_service_declares_only_its_own_stream_people_the_dlq_and_ops(nc: Client) -> None:
    """A holder of personal data declares its own stream, PEOPLE (the erasure requests it
    consumes), the DLQ and OPS (where it records its actions); a service that holds
    none, the DLQ and OPS."""
    js = nc.jetstream()
    await ensure_streams(js, duplicate_window_s=600, streams=streams_of("events"))
    names = {info.config.name for info in await js.streams_info()}
    assert names == {"EVENTS", PEOPLE_STREAM, "DLQ", OPS_STREAM}
    assert {spec.name for spec in streams_of("probe")} == {"DLQ", OPS_STREAM}
    assert len(STREAMS) == 6


async def test_ops_is_created_append_only_and_never_changed(nc: Client) -> None:
    """OPS is created as the admin declares it (nothing deleted, no purge) and a
    declaration that differs leaves it as it is: nobody updates it."""
    js = nc.jetstream()
    await ensure_streams(js, duplicate_window_s=600, streams=streams_of("events"))
    await js.publish(ActionRecorded.SUBJECT, b"{}", headers={"Nats-Msg-Id": "a"})
    await ensure_streams(js, duplicate_window_s=3600, replicas=1, streams=streams_of("events"))
    ops = await js.stream_info(OPS_STREAM)
    assert ops.config.deny_delete and ops.config.deny_purge
    assert ops.config.duplicate_window == 600 and ops.state.messages == 1
    assert (await js.stream_info("EVENTS")).config.duplicate_window == 3600


async def test_a_changed_consumer_definition_is_applied_to_the_existing_durable(nc: Client) -> None:
    js = nc.jetstream()
    await ensure_streams(js, duplicate_window_s=600)
    old = ConsumerSpec(
        "SUBSCRIPTIONS", "events-subscriptions", ("subscriptions.membership.started",)
    )
    new = ConsumerSpec(
        "SUBSCRIPTIONS",
        "events-subscriptions",
        ("subscriptions.membership.ended", "subscriptions.membership.started"),
    )
    await ensure_consumer(js, old, ack_wait_s=30)
    await ensure_consumer(js, new, ack_wait_s=10)

    info = await js.consumer_info("SUBSCRIPTIONS", "events-subscriptions")
    assert sorted(info.config.filter_subjects or []) == sorted(new.subjects)
    assert info.config.ack_wait == 10
    assert info.config.max_deliver == -1  # the consumer dead-letters; JetStream never drops
