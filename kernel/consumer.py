"""Consuming facts from JetStream: in order, once, with retries and dead letters.

Each fetched batch is applied in one transaction with its inbox records;
acknowledgements follow the commit. If any handler in the batch fails, the
batch is applied again one message at a time, each in its own savepoint, so
that only the failing messages are retried.
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


@dataclass
class _Outcome:
    """What became of a batch once its transaction ended."""

    done: list[Msg] = field(default_factory=list)
    failed: list[tuple[Msg, Exception]] = field(default_factory=list)
    applied: int = 0
    skipped: int = 0
    published: bool = False


@dataclass(frozen=True)
class _Decoded:
    msg: Msg
    envelope: Envelope
    message: Message
    handler: Handler


class _HandlerFailed(Exception):
    """Raised out of a batch's transaction when one message's handler fails."""

    def __init__(self, item: _Decoded, error: Exception) -> None:
        super().__init__(str(error))
        self.item = item
        self.error = error


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
        ready: list[_Decoded] = []
        for msg in msgs:
            decoded = self._decode(msg)
            if isinstance(decoded, Failure):
                await self._dead_letter(msg, decoded)
            else:
                ready.append(decoded)
        if not ready:
            return
        try:
            outcome = await self._apply_together(ready)
        except _HandlerFailed as failed:
            # One handler failed and took the batch's transaction with it: apply the
            # others one by one, each in a savepoint, so only the failing ones retry.
            try:
                outcome = await self._apply_one_by_one(ready, failed)
            except Exception as error:
                outcome = self._not_committed(ready, error)
        except Exception as error:
            outcome = self._not_committed(ready, error)
        self.stats.applied += outcome.applied
        self.stats.skipped += outcome.skipped
        if outcome.published:
            self._on_commit()
        for msg in outcome.done:
            await _settle(msg.ack())
        for msg, error in outcome.failed:
            await self._retry_or_dead_letter(msg, error)

    async def _apply_together(self, ready: list[_Decoded]) -> _Outcome:
        """The common case: the whole batch in one transaction, one inbox query and insert."""
        outcome = _Outcome(done=[item.msg for item in ready])
        async with self._sessions() as session, session.begin():
            seen = await inbox.handled(session, self.service, (item.envelope.id for item in ready))
            fresh: list[str] = []
            for item in ready:
                if item.envelope.id in seen:
                    outcome.skipped += 1
                    continue
                seen.add(item.envelope.id)
                publish = Publisher(session, item.envelope)
                try:
                    await item.handler(
                        item.message, HandlerContext(session, item.envelope, publish)
                    )
                except Exception as error:
                    raise _HandlerFailed(item, error) from error
                outcome.published = outcome.published or bool(publish.published)
                fresh.append(item.envelope.id)
            await inbox.record(session, self.service, fresh)
        outcome.applied = len(fresh)
        return outcome

    async def _apply_one_by_one(self, ready: list[_Decoded], known: _HandlerFailed) -> _Outcome:
        outcome = _Outcome()
        async with self._sessions() as session, session.begin():
            for item in ready:
                if item is known.item:  # it just failed in this delivery: don't run it twice
                    self._log_failure(item, known.error)
                    outcome.failed.append((item.msg, known.error))
                    continue
                try:
                    async with session.begin_nested():
                        if not await inbox.claim(session, self.service, item.envelope.id):
                            outcome.skipped += 1
                            outcome.done.append(item.msg)
                            continue
                        publish = Publisher(session, item.envelope)
                        await item.handler(
                            item.message, HandlerContext(session, item.envelope, publish)
                        )
                except Exception as error:
                    self._log_failure(item, error)
                    outcome.failed.append((item.msg, error))
                    continue
                outcome.applied += 1
                outcome.published = outcome.published or bool(publish.published)
                outcome.done.append(item.msg)
        return outcome

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

    def _not_committed(self, ready: list[_Decoded], error: Exception) -> _Outcome:
        """The store refused the batch (a lost race, a lock, a full disk): retry all of it."""
        log.warning("%s: batch of %d not committed: %r", self.spec.durable, len(ready), error)
        return _Outcome(failed=[(item.msg, error) for item in ready])

    def _log_failure(self, item: _Decoded, error: Exception) -> None:
        log.warning(
            "%s: %s %s failed (delivery %d): %r",
            self.spec.durable,
            item.envelope.type,
            item.envelope.id,
            item.msg.metadata.num_delivered,
            error,
        )

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
