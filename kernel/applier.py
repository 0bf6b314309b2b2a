"""Applying facts to a service's store, once: the one path shared by live
consumption, replay and redrive.

A batch is applied in one transaction with its inbox records. If a handler in
the batch fails, the batch is applied again one message at a time, each in its
own savepoint (the failed one is not run twice), so that only the failing
messages are reported failed. Facts next to one another in a batch whose
handlers share a ``Learner`` are learnt together, in one call: a read model
learns a batch in a few statements rather than a few per fact. A message that
is not a valid envelope, or whose body does not fit its model, is refused
before anything runs: retrying cannot fix it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from contracts import REGISTRY, Envelope, Message, UnknownMessage
from contracts.personal import SEALED_PREFIX
from kernel import inbox
from kernel.deadletter import Failure
from kernel.outbox import Publisher
from kernel.personal import Keyring
from kernel.store import READS_ONLY

log = logging.getLogger(__name__)

# Every sealed field starts so, in the message's bytes as in its value (``Keyring.warm``
# finds the people to fetch keys for the same way): a fact without it has nothing to open.
_SEALED = SEALED_PREFIX.encode()


@dataclass
class HandlerContext:
    """What a fact handler gets besides the message: its transaction, the envelope,
    and where to publish the facts it causes."""

    session: AsyncSession
    envelope: Envelope
    publish: Publisher


Handler = Callable[[Any, HandlerContext], Awaitable[None]]
Learn = Callable[[AsyncSession, Sequence[tuple[Any, Envelope]]], Awaitable[None]]


@dataclass(frozen=True)
class Learner:
    """A fact handler that only keeps a read model up to date, written to take a run
    of facts at once: ``learn(session, [(message, envelope), ...])``, in stream order.

    The applier hands it every fact of a batch that goes, one after another, to the
    same ``learn``. Called as any handler, with one fact, it learns that fact alone.
    ``learn`` must leave the store exactly as learning the facts one at a time
    would, and publishes nothing.
    """

    learn: Learn

    async def __call__(self, message: Any, ctx: HandlerContext) -> None:
        await self.learn(ctx.session, [(message, ctx.envelope)])


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
    """Raised out of a batch's transaction when one message's handler fails; ``item``
    is None when it was a learner's run of several, which one not known."""

    def __init__(self, item: Decoded | None, error: Exception) -> None:
        super().__init__(str(error))
        self.item = item
        self.error = error


class Applier:
    """Decodes messages and applies them with ``handlers`` under the inbox ``scope``.

    With ``memory``, the ids it applies are kept in that set instead of the inbox
    table: for a scope that lasts no longer than one transaction (a rebuild's), so
    that nothing needs writing down, nor deleting once it is over.
    """

    def __init__(
        self,
        *,
        scope: str,
        handlers: Mapping[type[Message], Handler],
        sessions: async_sessionmaker[AsyncSession],
        keyring: Keyring | None = None,
        memory: set[str] | None = None,
    ) -> None:
        self.scope = scope
        self._memory = memory
        self._keyring = keyring
        self._handlers = {
            (model.TYPE, model.VERSION): handler for model, handler in handlers.items()
        }
        self._sessions = sessions
        bind = sessions.kw.get("bind")
        # The inbox is read before a batch on a connection of its own: on SQLite, one
        # that takes no write lock. (A rebuild's sessions share its one connection.)
        self._reading = (
            async_sessionmaker(bind.execution_options(**{READS_ONLY: True}))
            if isinstance(bind, AsyncEngine)
            else sessions
        )

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(sorted({REGISTRY.spec(t, v).subject for t, v in self._handlers}))

    async def prepare(self, batch: Sequence[Incoming]) -> None:
        """Ready a fetched batch for ``decode``: the keys of the people it names are
        fetched together rather than one round trip per message."""
        if self._keyring is not None:
            await self._keyring.warm(item.data for item in batch)

    async def handled(self, message_ids: Iterable[str]) -> set[str]:
        """Which of ``message_ids`` this scope has already handled, in one query: a
        replay skips those before paying to open and validate them."""
        if self._memory is not None:
            return self._memory.intersection(message_ids)
        async with self._reading() as session:
            return await inbox.handled(session, self.scope, message_ids)

    async def decode(self, incoming: Incoming) -> Decoded | Failure:
        """The message as its handler takes it, personal fields opened; or why it cannot be.

        A key store that cannot be reached raises, so the message is delivered again
        later rather than dead-lettered.
        """
        try:
            envelope = Envelope.from_bytes(incoming.data)
        except ValidationError as error:
            return Failure("malformed", f"not a Vestry envelope: {error}")
        if self._keyring is not None and _SEALED in incoming.data:
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
            seen = await self._handled_in(session, _ids(ready))
            fresh: list[str] = []
            run: list[Decoded] = []  # facts in a row for the same learner, not yet learnt
            for item in ready:
                if item.envelope.id in seen:
                    outcome.skipped += 1
                    continue
                seen.add(item.envelope.id)
                fresh.append(item.envelope.id)
                if isinstance(item.handler, Learner):
                    if run and _learn_of(run[0]) is not item.handler.learn:
                        await _learn_run(session, run)
                        run = []
                    run.append(item)
                    continue
                await _learn_run(session, run)
                run = []
                publish = Publisher(session, item.envelope)
                try:
                    await item.handler(
                        item.message, HandlerContext(session, item.envelope, publish)
                    )
                except Exception as error:
                    raise _HandlerFailed(item, error) from error
                outcome.published = outcome.published or bool(publish.published)
            await _learn_run(session, run)
            if self._memory is None:
                await inbox.record(session, self.scope, fresh)
        self._remember(fresh)
        outcome.applied = len(fresh)
        return outcome

    async def _apply_one_by_one(self, ready: list[Decoded], known: _HandlerFailed) -> Outcome:
        outcome = Outcome()
        applied: set[str] = set()
        async with self._sessions() as session, session.begin():
            for item in ready:
                if item is known.item:  # it just failed in this delivery: don't run it twice
                    self._log_failure(item, known.error)
                    outcome.failed.append((item.incoming, known.error))
                    continue
                try:
                    async with session.begin_nested():
                        if not await self._claim(session, item.envelope.id, applied):
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
                applied.add(item.envelope.id)
                outcome.applied += 1
                outcome.published = outcome.published or bool(publish.published)
                outcome.done.append(item.incoming)
        self._remember(applied)
        return outcome

    async def _handled_in(self, session: AsyncSession, message_ids: list[str]) -> set[str]:
        if self._memory is not None:
            return self._memory.intersection(message_ids)
        return await inbox.handled(session, self.scope, message_ids)

    async def _claim(self, session: AsyncSession, message_id: str, applied: set[str]) -> bool:
        """Whether ``message_id`` is still to apply; in the inbox table, record it as applied."""
        if self._memory is not None:
            return message_id not in self._memory and message_id not in applied
        return await inbox.claim(session, self.scope, message_id)

    def _remember(self, applied: Iterable[str]) -> None:
        """Once their transaction has committed, keep ``applied`` in memory (if kept there)."""
        if self._memory is not None:
            self._memory.update(applied)

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


def _learn_of(item: Decoded) -> Learn:
    assert isinstance(item.handler, Learner)
    return item.handler.learn


async def _learn_run(session: AsyncSession, run: list[Decoded]) -> None:
    """Learn a run of facts for one learner in one call (nothing to do for an empty run)."""
    if not run:
        return
    try:
        await _learn_of(run[0])(session, [(item.message, item.envelope) for item in run])
    except Exception as error:
        raise _HandlerFailed(run[0] if len(run) == 1 else None, error) from error
