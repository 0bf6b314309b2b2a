"""Applying facts to a service's store, once: the one path shared by live
consumption, replay and redrive.

A batch is applied in one transaction with its inbox records. If a handler in
the batch fails, the batch is applied again one message at a time, each in its
own savepoint (the failed one is not run twice), so that only the failing
messages are reported failed. A message that is not a valid envelope, or whose
body does not fit its model, is refused before anything runs: retrying cannot
fix it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts import REGISTRY, Envelope, Message, UnknownMessage
from kernel import inbox
from kernel.deadletter import Failure
from kernel.outbox import Publisher
from kernel.personal import Keyring

log = logging.getLogger(__name__)


@dataclass
class HandlerContext:
    """What a fact handler gets besides the message: its transaction, the envelope,
    and where to publish the facts it causes."""

    session: AsyncSession
    envelope: Envelope
    publish: Publisher


Handler = Callable[[Any, HandlerContext], Awaitable[None]]


@dataclass(frozen=True)
class Incoming:
    """A message as it came off a stream, live, replayed or redriven."""

    data: bytes
    subject: str
    stream: str
    sequence: int
    deliveries: int = 1
    origin: Any = None  # the JetStream message to settle, when there is one


@dataclass(frozen=True)
class Decoded:
    incoming: Incoming
    envelope: Envelope
    message: Message
    handler: Handler


@dataclass
class Outcome:
    """What became of a batch once its transaction ended."""

    done: list[Incoming] = field(default_factory=list)
    failed: list[tuple[Incoming, Exception]] = field(default_factory=list)
    applied: int = 0
    skipped: int = 0
    published: bool = False


class _HandlerFailed(Exception):
    """Raised out of a batch's transaction when one message's handler fails."""

    def __init__(self, item: Decoded, error: Exception) -> None:
        super().__init__(str(error))
        self.item = item
        self.error = error


class Applier:
    """Decodes messages and applies them with ``handlers`` under the inbox ``scope``."""

    def __init__(
        self,
        *,
        scope: str,
        handlers: Mapping[type[Message], Handler],
        sessions: async_sessionmaker[AsyncSession],
        keyring: Keyring | None = None,
    ) -> None:
        self.scope = scope
        self._keyring = keyring
        self._handlers = {
            (model.TYPE, model.VERSION): handler for model, handler in handlers.items()
        }
        self._sessions = sessions

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(sorted({REGISTRY.spec(t, v).subject for t, v in self._handlers}))

    async def prepare(self, batch: Sequence[Incoming]) -> None:
        """Ready a fetched batch for ``decode``: the keys of the people it names are
        fetched together rather than one round trip per message."""
        if self._keyring is not None:
            await self._keyring.warm(item.data for item in batch)

    async def decode(self, incoming: Incoming) -> Decoded | Failure:
        """The message as its handler takes it, personal fields opened; or why it cannot be.

        A key store that cannot be reached raises, so the message is delivered again
        later rather than dead-lettered.
        """
        try:
            envelope = Envelope.from_bytes(incoming.data)
        except ValidationError as error:
            return Failure("malformed", f"not a Vestry envelope: {error}")
        if self._keyring is not None:
            try:
                envelope = await self._keyring.open(envelope)
            except (InvalidTag, ValueError) as error:
                return Failure("invalid", f"a sealed field does not open: {error or 'bad tag'}")
        try:
            spec = REGISTRY.spec(envelope.type, envelope.version)
            handler = self._handlers[(envelope.type, envelope.version)]
        except (UnknownMessage, KeyError):
            return Failure(
                "unsupported",
                f"{self.scope} has no handler for {envelope.type} v{envelope.version}",
            )
        try:
            message = spec.model.model_validate(envelope.data)
        except ValidationError as error:
            return Failure(
                "invalid", f"{envelope.type} v{envelope.version} does not validate: {error}"
            )
        return Decoded(incoming, envelope, message, handler)

    async def apply(self, ready: list[Decoded]) -> Outcome:
        """Apply ``ready`` once each; never raises: failures are in the outcome."""
        if not ready:
            return Outcome()
        try:
            return await self._apply_together(ready)
        except _HandlerFailed as failed:
            try:
                return await self._apply_one_by_one(ready, failed)
            except Exception as error:
                return self._not_committed(ready, error)
        except Exception as error:
            return self._not_committed(ready, error)

    async def _apply_together(self, ready: list[Decoded]) -> Outcome:
        """The common case: the whole batch in one transaction, one inbox query and insert."""
        outcome = Outcome(done=[item.incoming for item in ready])
        async with self._sessions() as session, session.begin():
            seen = await inbox.handled(session, self.scope, _ids(ready))
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
            await inbox.record(session, self.scope, fresh)
        outcome.applied = len(fresh)
        return outcome

    async def _apply_one_by_one(self, ready: list[Decoded], known: _HandlerFailed) -> Outcome:
        outcome = Outcome()
        async with self._sessions() as session, session.begin():
            for item in ready:
                if item is known.item:  # it just failed in this delivery: don't run it twice
                    self._log_failure(item, known.error)
                    outcome.failed.append((item.incoming, known.error))
                    continue
                try:
                    async with session.begin_nested():
                        if not await inbox.claim(session, self.scope, item.envelope.id):
                            outcome.skipped += 1
                            outcome.done.append(item.incoming)
                            continue
                        publish = Publisher(session, item.envelope)
                        await item.handler(
                            item.message, HandlerContext(session, item.envelope, publish)
                        )
                except Exception as error:
                    self._log_failure(item, error)
                    outcome.failed.append((item.incoming, error))
                    continue
                outcome.applied += 1
                outcome.published = outcome.published or bool(publish.published)
                outcome.done.append(item.incoming)
        return outcome

    def _not_committed(self, ready: list[Decoded], error: Exception) -> Outcome:
        """The store refused the batch (a lost race, a lock, a full disk): all of it failed."""
        log.warning("%s: batch of %d not committed: %r", self.scope, len(ready), error)
        return Outcome(failed=[(item.incoming, error) for item in ready])

    def _log_failure(self, item: Decoded, error: Exception) -> None:
        log.warning(
            "%s: %s %s (%s #%d, delivery %d) failed: %r",
            self.scope,
            item.envelope.type,
            item.envelope.id,
            item.incoming.stream,
            item.incoming.sequence,
            item.incoming.deliveries,
            error,
        )


def _ids(ready: Iterable[Decoded]) -> list[str]:
    return [item.envelope.id for item in ready]
