"""Consuming facts from JetStream: in order, once, with retries and dead letters.

Each fetched batch is applied in one transaction, each message in its own
savepoint together with its inbox record; acknowledgements follow the commit.
A message whose handler fails is retried after a delay that grows with its
delivery count, and dead-lettered when its attempts run out. A message that is
not a valid envelope, or whose body does not fit its model, is dead-lettered
at once: retrying cannot fix it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts import REGISTRY, Envelope, Message, UnknownMessage
from kernel import inbox
from kernel.deadletter import Failure, dead_letter
from kernel.outbox import Publisher
from kernel.settings import Settings
from kernel.streams import ConsumerSpec, ensure_consumer

log = logging.getLogger(__name__)


@dataclass
class HandlerContext:
    """What a fact handler gets besides the message: its transaction, the envelope,
    and where to publish the facts it causes."""

    session: AsyncSession
    envelope: Envelope
    publish: Publisher


Handler = Callable[[Any, HandlerContext], Awaitable[None]]


@dataclass
class ConsumerStats:
    applied: int = 0
    skipped: int = 0
    retried: int = 0
    dead_lettered: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Decoded:
    msg: Msg
    envelope: Envelope
    message: Message
    handler: Handler


class FactConsumer:
    """One service's durable consumer on one stream."""

    def __init__(
        self,
        *,
        service: str,
        stream: str,
        handlers: Mapping[type[Message], Handler],
        js: JetStreamContext,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.service = service
        self.spec = ConsumerSpec(
            stream=stream,
            durable=f"{service}-{stream.lower()}",
            subjects=tuple(sorted({model.SUBJECT for model in handlers})),
        )
        self._handlers = {
            (model.TYPE, model.VERSION): handler for model, handler in handlers.items()
        }
        self._js = js
        self._sessions = sessions
        self._settings = settings
        self._on_commit = on_commit
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
            except Exception as error:
                log.warning(
                    "%s: fetch failed (%s); retrying",
                    self.spec.durable,
                    error or type(error).__name__,
                )
                await asyncio.sleep(0.5)
                if isinstance(error, nats.js.errors.NotFoundError):
                    subscription = None
                continue
            await self.process(msgs)

    async def process(self, msgs: list[Msg]) -> None:
        """Apply one fetched batch, then settle each message with JetStream."""
        ready: list[_Decoded] = []
        for msg in msgs:
            decoded = self._decode(msg)
            if isinstance(decoded, Failure):
                await self._dead_letter(msg, decoded)
            else:
                ready.append(decoded)
        if not ready:
            return
        done: list[Msg] = []
        failed: list[tuple[Msg, Exception]] = []
        try:
            async with self._sessions() as session, session.begin():
                for item in ready:
                    outcome = await self._apply(session, item)
                    if isinstance(outcome, Exception):
                        failed.append((item.msg, outcome))
                    else:
                        done.append(item.msg)
        except Exception as error:  # the commit itself failed: nothing was applied
            log.exception("%s: batch not committed", self.spec.durable)
            done, failed = [], [(item.msg, error) for item in ready]
        else:
            self._on_commit()
        for msg in done:
            await _settle(msg.ack())
        for msg, error in failed:
            await self._retry_or_dead_letter(msg, error)

    def _decode(self, msg: Msg) -> _Decoded | Failure:
        delivered = msg.metadata.num_delivered
        if delivered > self._settings.max_deliver + 2:
            # Delivered again and again without ever being settled: the
            # consumer keeps dying on it. Stop the loop before it goes on.
            return Failure("undeliverable", f"delivered {delivered} times without being settled")
        try:
            envelope = Envelope.from_bytes(msg.data)
        except ValidationError as error:
            return Failure("malformed", f"not a Vestry envelope: {error}")
        try:
            spec = REGISTRY.spec(envelope.type, envelope.version)
            handler = self._handlers[(envelope.type, envelope.version)]
        except (UnknownMessage, KeyError):
            return Failure(
                "unsupported",
                f"{self.service} has no handler for {envelope.type} v{envelope.version}",
            )
        try:
            message = spec.model.model_validate(envelope.data)
        except ValidationError as error:
            return Failure(
                "invalid", f"{envelope.type} v{envelope.version} does not validate: {error}"
            )
        return _Decoded(msg, envelope, message, handler)

    async def _apply(self, session: AsyncSession, item: _Decoded) -> Exception | None:
        try:
            async with session.begin_nested():
                if not await inbox.claim(session, self.service, item.envelope.id):
                    self.stats.skipped += 1
                    return None
                await item.handler(
                    item.message,
                    HandlerContext(session, item.envelope, Publisher(session, item.envelope)),
                )
        except Exception as error:
            log.warning(
                "%s: %s %s failed: %r",
                self.spec.durable,
                item.envelope.type,
                item.envelope.id,
                error,
            )
            return error
        self.stats.applied += 1
        return None

    async def _retry_or_dead_letter(self, msg: Msg, error: Exception) -> None:
        delivered = msg.metadata.num_delivered
        if delivered < self._settings.max_deliver:
            self.stats.retried += 1
            await _settle(msg.nak(delay=self._settings.retry_delay(delivered)))
            return
        await self._dead_letter(msg, Failure("handler", f"{type(error).__name__}: {error}"))

    async def _dead_letter(self, msg: Msg, failure: Failure) -> None:
        try:
            await dead_letter(
                self._js, msg, service=self.service, consumer=self.spec.durable, failure=failure
            )
        except Exception as error:  # not stored: leave it to be delivered again
            log.warning("%s: dead letter not stored (%s); will retry", self.spec.durable, error)
            await _settle(msg.nak(delay=1.0))
            return
        self.stats.dead_lettered += 1
        self.stats.errors.append(failure.error)
        log.error(
            "%s: dead-lettered %s #%s: %s",
            self.spec.durable,
            msg.subject,
            msg.metadata.sequence.stream,
            failure.error[:300],
        )
        await _settle(msg.term())


async def _settle(action: Awaitable[None]) -> None:
    """Ack, nak or term; if the connection is gone the message is simply redelivered later."""
    try:
        await action
    except Exception as error:
        log.debug("settling a message failed: %s", error)
