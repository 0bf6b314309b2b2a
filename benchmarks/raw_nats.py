"""The baseline: plain nats-py JetStream, no Vestry, on its own stream."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import nats
import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

STREAM = "BENCH_RAW"
SUBJECT = "bench.raw.msg"
DURABLE = "bench-raw"
BATCH = 500


@dataclass(frozen=True)
class RawTimings:
    publish_s: float  # publish_async of every message until every PubAck is in
    consume_s: float  # pull fetches in batches, each message acked, until all are in
    total_s: float


async def publish_then_consume(
    url: str, count: int, *, size: int = 200, batch: int = BATCH, timeout: float = 120.0
) -> RawTimings:
    """Publish ``count`` messages of ``size`` bytes with ``publish_async``, then pull and ack them all."""
    nc = await nats.connect(url, name="bench-raw")
    try:
        js = nc.jetstream(timeout=10)
        await js.add_stream(StreamConfig(name=STREAM, subjects=[SUBJECT], storage=StorageType.FILE))
        sub = await js.pull_subscribe(
            SUBJECT,
            durable=DURABLE,
            stream=STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL),
        )
        payload = b"x" * size
        deadline = time.monotonic() + timeout

        started = time.monotonic()
        acks = [await js.publish_async(SUBJECT, payload) for _ in range(count)]
        await asyncio.wait_for(asyncio.gather(*acks), timeout)
        published = time.monotonic()

        received = 0
        while received < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw consume: {received} of {count} after {timeout:.0f}s")
            try:
                msgs = await sub.fetch(batch, timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            for msg in msgs:
                await msg.ack()
            received += len(msgs)
        await nc.flush()
        consumed = time.monotonic()
        await js.delete_stream(STREAM)
    finally:
        await nc.close()
    return RawTimings(published - started, consumed - published, consumed - started)
