"""Consuming facts from JetStream, live: in order, once, with retries and dead letters.

Each fetched batch goes through the service's ``Applier``; acknowledgements
follow the commit. A message whose handler fails is retried after a delay
that grows with its delivery count, and dead-lettered when its attempts run
out; one that cannot be decoded is dead-lettered at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from contracts.people_v1 import PersonErasureRequested
from kernel.applier import Applier, Handler, HandlerContext, Incoming
from kernel.deadletter import Failure, dead_letter
from kernel.settings import Settings
from kernel.streams import ConsumerSpec, ensure_consumer

log = logging.getLogger(__name__)

__all__ = ["ConsumerStats", "FactConsumer", "Handler", "HandlerContext", "incoming"]


@dataclass
class ConsumerStats:
    applied: int = 0
    skipped: int = 0
    retried: int = 0
    dead_lettered: int = 0
    errors: list[str] = field(default_factory=list)


def incoming(msg: Msg) -> Incoming:
    meta = msg.metadata
    return Incoming(
        data=msg.data,
        subject=msg.subject,
        stream=meta.stream,
        sequence=meta.sequence.stream,
        deliveries=meta.num_delivered,
        origin=msg,
    )


class FactConsumer:
    """One service's durable consumer on one stream."""

    def __init__(
        self,
        *,
        service: str,
        stream: str,
        applier: Applier,
        js: JetStreamContext,
        settings: Settings,
        on_commit: Callable[[], None] = lambda: None,
        after_erasure: Callable[[list[PersonErasureRequested]], Awaitable[None]] | None = None,
    ) -> None:
        self.service = service
        self.spec = ConsumerSpec(
            stream=stream, durable=f"{service}-{stream.lower()}", subjects=applier.subjects
        )
        self._applier = applier
        self._js = js
        self._settings = settings
        self._on_commit = on_commit
        self._after_erasure = after_erasure
        self.stats = ConsumerStats()

    async def declare(self) -> None:
        await ensure_consumer(self._js, self.spec, ack_wait_s=self._settings.ack_wait_s)

    async def run(self) -> None:
        """Fetch and apply until cancelled; rides out NATS restarts."""
        subscription = None
        while True:
            try:
                if subscription is None:
                    await self.declare()
                    subscription = await self._js.pull_subscribe_bind(
                        durable=self.spec.durable, stream=self.spec.stream
                    )
                msgs = await subscription.fetch(self._settings.fetch_batch, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except nats.js.errors.NotFoundError:  # stream or consumer not (or no longer) there
                subscription = None
                await asyncio.sleep(0.5)
                continue
            except Exception as error:
                log.warning(
                    "%s: fetch failed (%s); retrying",
                    self.spec.durable,
                    error or type(error).__name__,
                )
                await asyncio.sleep(0.5)
                continue
            try:
                await self.process(msgs)
            except Exception:  # never let one batch stop the consumer: it is redelivered
                log.exception("%s: batch failed", self.spec.durable)

    async def process(self, msgs: list[Msg]) -> None:
        """Apply one fetched batch, then settle each message with JetStream."""
        ready = []
        items = [incoming(msg) for msg in msgs]
        await self._applier.prepare(items)
        for item in items:
            decoded = await self._decode(item)
            if isinstance(decoded, Failure):
                await self._dead_letter(item, decoded)
            else:
                ready.append(decoded)
        outcome = await self._applier.apply(ready)
        self.stats.applied += outcome.applied
        self.stats.skipped += outcome.skipped
        if outcome.published:
            self._on_commit()
        erasures = [
            item.message for item in ready if isinstance(item.message, PersonErasureRequested)
        ]
        if self._after_erasure is not None and erasures:
            await self._after_erasure(erasures)  # the erased rows' old bytes leave the store
        for item in outcome.done:
            await _settle(item.origin.ack())
        for item, error in outcome.failed:
            await self._retry_or_dead_letter(item, error)

    async def _decode(self, item: Incoming):  # type: ignore[no-untyped-def]
        if item.deliveries > self._settings.max_deliver + 2:
            # Delivered again and again without ever being settled: the
            # consumer keeps dying on it. Stop the loop before it goes on.
            return Failure(
                "undeliverable", f"delivered {item.deliveries} times without being settled"
            )
        return await self._applier.decode(item)

    async def _retry_or_dead_letter(self, item: Incoming, error: Exception) -> None:
        if item.deliveries < self._settings.max_deliver:
            self.stats.retried += 1
            await _settle(item.origin.nak(delay=self._settings.retry_delay(item.deliveries)))
            return
        await self._dead_letter(item, Failure("handler", f"{type(error).__name__}: {error}"))

    async def _dead_letter(self, item: Incoming, failure: Failure) -> None:
        try:
            await dead_letter(
                self._js, item, service=self.service, consumer=self.spec.durable, failure=failure
            )
        except Exception as error:  # not stored: leave it to be delivered again
            log.warning("%s: dead letter not stored (%s); will retry", self.spec.durable, error)
            await _settle(item.origin.nak(delay=1.0))
            return
        self.stats.dead_lettered += 1
        self.stats.errors.append(failure.error)
        log.error(
            "%s: dead-lettered %s #%s: %s",
            self.spec.durable,
            item.subject,
            item.sequence,
            failure.error[:300],
        )
        await _settle(item.origin.term())


async def _settle(action: Awaitable[None]) -> None:
    """Ack, nak or term; if the connection is gone the message is simply redelivered later."""
    try:
        await action
    except Exception as error:
        log.debug("settling a message failed: %s", error)
