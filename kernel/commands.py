"""Commands over request/reply: every answer is a ``Reply``; a refusal carries a
structured error (code, message, field) and changes nothing.

A service answers a command once per envelope id. Its answer is written to the
``answers`` table in the transaction of the command's effects, and a request
carrying the same id again (a client retrying after a lost reply, on whichever
replica) gets those bytes back and changes nothing. Kept: every answer of a
command that wrote to the store or published a fact, and every business refusal
(``Refused``, in a transaction of its own, since the command's was rolled back).
Not kept, so worked out afresh on a retry: answers of queries (a handler that
wrote nothing and published nothing), refusals of requests that do not validate,
``too_large`` and internal errors, any of which a retry may get past. The relay's
``tidy`` forgets answers older than ``command_answer_retention_s``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats.errors
import pydantic_core
from nats.aio.client import Client
from pydantic import ValidationError
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from contracts import REGISTRY, Envelope, Message, UnknownMessage
from contracts.envelope import MESSAGE_ID_LENGTH
from contracts.system_v1 import CommandError, Reply
from kernel import audit, outbox
from kernel.outbox import Publisher
from kernel.store import answers_table

log = logging.getLogger(__name__)


def answerable(reply: str | None) -> bool:
    """Whether an answer may go to ``reply``: a client's inbox (``_INBOX.`` or its
    user's ``_INBOX_<user>.``), or nowhere.

    NATS lets a responder publish to whatever reply subject a request names
    (``allow_responses``), so a request naming a stream's subject would have the
    service write its answer into that stream as if it were a fact. A service
    answers inboxes only, and drops any other request unanswered and unhandled.
    """
    return not reply or reply.startswith(("_INBOX.", "_INBOX_"))


class Refused(Exception):
    """Raised by a command handler to refuse a command with a reason a person can act on."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.error = CommandError(code=code, message=message, field=field)


class CommandFailed(Exception):
    """Raised on the client when a service refuses a command."""

    def __init__(self, error: CommandError) -> None:
        super().__init__(error.message)
        self.error = error


class ServiceUnavailable(Exception):
    """Raised on the client when no instance of the service answers."""


@dataclass
class CommandContext:
    session: AsyncSession
    envelope: Envelope
    publish: Publisher
    reply_to: str | None = None  # the request's reply subject: whose inbox it is
    service: str | None = None  # who answers: the owner of the command's subject

    async def record_action(
        self,
        action: str,
        *,
        target: str | None = None,
        filters: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> Envelope:
        """Record in the audit stream (OPS) that this command did ``action``: through the
        outbox, in the command's own transaction, so a refused or failed command records
        nothing, and a retry answered with the first answer records nothing again. Who
        did it is the envelope's staff member, else the NATS user of the reply subject
        (``kernel.audit``). Call it once the command is sure to take effect."""
        service = self.service or REGISTRY.spec(self.envelope.type, self.envelope.version).owner
        record = audit.action_recorded(
            action,
            service=service,
            by=audit.performer(self.envelope.actor, self.reply_to),
            target=target,
            filters=filters,
            result=result,
            dry_run=dry_run,
            request_id=self.envelope.id,
        )
        return await self.publish(record, id=audit.record_id(service, action, self.envelope.id))


CommandHandler = Callable[[Any, CommandContext], Awaitable[dict[str, Any]]]


def validation_error(error: ValidationError, prefix: tuple[str | int, ...] = ()) -> CommandError:
    """The first problem in ``error`` as a CommandError naming the field; the rest in the message."""
    problems = error.errors()
    first = problems[0]
    location = [str(part) for part in first["loc"][len(prefix) :]]
    field = ".".join(location) or None
    messages = []
    for problem in problems:
        where = ".".join(str(part) for part in problem["loc"][len(prefix) :])
        messages.append(f"{where}: {problem['msg']}" if where else problem["msg"])
    return CommandError(code="invalid", message="; ".join(messages), field=field)


def read_command(raw: bytes, model: type[Message]) -> tuple[Message, Envelope] | Reply:
    """``raw`` as an envelope of ``model`` and its command, or the Reply refusing it.

    The refusal carries the request's id and correlation id when it has them, even if
    the envelope is otherwise wrong. JSON nested deeper than the parser goes (about 200
    levels) is refused as ``invalid``, like any other JSON that does not parse.
    """
    try:
        envelope = Envelope.from_bytes(raw)
    except ValidationError as error:
        return Reply(ok=False, error=validation_error(error), **_ids_in(raw))
    about = _about(envelope)
    if (envelope.type, envelope.version) != (model.TYPE, model.VERSION):
        return Reply(
            ok=False,
            error=CommandError(
                code="unsupported",
                message=f"{model.SUBJECT} takes {model.TYPE} v{model.VERSION}, not {envelope.type} v{envelope.version}",
            ),
            **about,
        )
    try:
        command = model.model_validate(envelope.data)
    except ValidationError as error:
        return Reply(ok=False, error=validation_error(error), **about)
    return command, envelope


def _about(envelope: Envelope) -> dict[str, str]:
    """What a reply says of the request it answers."""
    return {"request_id": envelope.id, "correlation_id": envelope.correlation_id}


def _ids_in(raw: bytes) -> dict[str, str]:
    """The id and correlation id of a request that is not a valid envelope, where it has
    them as an envelope would; nothing for one that is not even a JSON object."""
    try:
        found = pydantic_core.from_json(raw)
    except ValueError:  # not JSON, or nested too deep
        return {}
    if not isinstance(found, dict):
        return {}
    ids = {"request_id": found.get("id"), "correlation_id": found.get("correlation_id")}
    return {
        name: value
        for name, value in ids.items()
        if isinstance(value, str) and 0 < len(value) <= MESSAGE_ID_LENGTH
    }


def _wire(reply: Reply) -> bytes:
    return reply.model_dump_json().encode()


async def answer(
    raw: bytes,
    *,
    model: type[Message],
    handler: CommandHandler,
    sessions: async_sessionmaker[AsyncSession],
    on_commit: Callable[[], None],
    reply_to: str | None = None,
    after_commit: Callable[[Sequence[Envelope]], Awaitable[None]] | None = None,
) -> Reply:
    """Validate ``raw`` as an envelope of ``model``, run the handler in one transaction, reply.

    Keeps no record of the answer, so a retry runs the command again: for a store without
    the kernel's ``answers`` table (the web service's staff accounts). A service's
    commands go through ``answer_once``.

    With ``after_commit`` (for a store without an outbox either), what the handler
    publishes is not written to the store but handed to ``after_commit`` once the
    transaction has committed; if that fails, the effect stands, the failure is
    logged, and the answer is still given.
    """
    read = read_command(raw, model)
    if isinstance(read, Reply):
        return read
    command, envelope = read
    published: list[Envelope] = []
    try:
        async with sessions() as session, session.begin():
            publish = (
                _Collecting(session, envelope) if after_commit else Publisher(session, envelope)
            )
            context = CommandContext(
                session, envelope, publish, reply_to=reply_to, service=_owner(model)
            )
            data = await handler(command, context)
            published = publish.published
    except Refused as refusal:
        return Reply(ok=False, error=refusal.error, **_about(envelope))
    except Exception:
        log.exception("%s %s failed", envelope.type, envelope.id)
        return _internal_error(envelope)
    on_commit()
    if after_commit is not None and published:
        try:
            await after_commit(published)
        except Exception:
            log.exception(
                "%s %s: done, but %s could not be published (send it again with the same id "
                "to publish them)",
                envelope.type,
                envelope.id,
                ", ".join(f"{e.type} {e.id}" for e in published),
            )
    return Reply(ok=True, data=data, **_about(envelope))


def _owner(model: type[Message]) -> str:
    """The service that answers ``model``: its subject's first token."""
    return model.SUBJECT.split(".", 1)[0]


async def answer_once(
    raw: bytes,
    *,
    model: type[Message],
    handler: CommandHandler,
    sessions: async_sessionmaker[AsyncSession],
    on_commit: Callable[[], None],
    max_payload: int | None = None,
    reply_to: str | None = None,
    reads_only: bool = False,
) -> bytes:
    """The answer to ``raw``, an envelope of ``model``, as the bytes to send: the first
    answer given to its envelope id, if there was one (and nothing runs), else the
    handler's, run in one transaction that also records the answer when the handler
    wrote or published anything (queries are not recorded) and commits it with the
    effects. A ``Refused`` is recorded in a transaction of its own.

    An answer longer than a message of ``max_payload`` bytes can carry is not sent:
    the transaction is rolled back and the caller told ``too_large``. ``reply_to`` is the
    request's reply subject: whose inbox the answer goes to, which the audit records
    (``CommandContext.record_action``).

    A query that only ever reads (``reads_only``, with ``sessions`` from
    ``kernel.store.reading_session_factory``) runs in a transaction that takes no write
    lock, so that a slow one (a document being printed) holds no writer up; nothing of
    it is recorded, a refusal included, and a handler that writes or publishes there
    fails rather than write unlocked.
    """
    read = read_command(raw, model)
    if isinstance(read, Reply):
        return _wire(read)
    command, envelope = read
    asked = _Asked(model, command, envelope)
    try:
        async with sessions() as session, session.begin():
            given = None if reads_only else await _answers_given(session, [asked])
            if given:
                return given[envelope.id]
            writes = _Writes(session)
            publish = Publisher(session, envelope)
            context = CommandContext(
                session, envelope, publish, reply_to=reply_to, service=_owner(model)
            )
            data = await handler(command, context)
            reply = _wire(Reply(ok=True, data=data, **_about(envelope)))
            _fits(reply, max_payload)
            await session.flush()
            if reads_only and (writes.seen or publish.published):
                raise RuntimeError(f"{model.TYPE} is answered as a query but it wrote")
            if writes.seen or publish.published:
                await _record(session, [(asked, reply)])
    except Refused as refusal:
        refused = Reply(ok=False, error=refusal.error, **_about(envelope))
        if reads_only:
            return _wire(refused)
        return await _record_alone(sessions, asked, _wire(refused))
    except _TooLarge as too_large:
        return _wire(too_large.reply(envelope))
    except Exception:
        # Another replica may have answered the same id first (the answer's primary key).
        given_since = await _given_alone(sessions, asked)
        if given_since is not None:
            return given_since
        log.exception("%s %s failed", envelope.type, envelope.id)
        return _wire(_internal_error(envelope))
    on_commit()
    return reply


def _internal_error(envelope: Envelope) -> Reply:
    return Reply(
        ok=False,
        error=CommandError(
            code="internal",
            message=f"{envelope.type} failed inside the service; nothing was changed",
        ),
        **_about(envelope),
    )


# Answers kept by envelope id.


class _Asked:
    """A command as its answer is kept: under its subject and envelope id, with a digest
    of the command itself, so that another command sent with a used id is told apart
    from a retry."""

    __slots__ = ("digest", "envelope", "scope")

    def __init__(self, model: type[Message], command: Message, envelope: Envelope) -> None:
        self.scope = model.SUBJECT
        self.envelope = envelope
        body = f"{model.TYPE}/{model.VERSION}/{command.model_dump_json()}"
        self.digest = hashlib.sha256(body.encode()).hexdigest()

    @property
    def id(self) -> str:
        return self.envelope.id

    def reused(self) -> bytes:
        """The refusal of a command sent with an id already used for another command."""
        return _wire(
            Reply(
                ok=False,
                error=CommandError(
                    code="conflict",
                    message=f"id {self.id} was already used for another {self.envelope.type}; "
                    "give each command an id of its own, and a retry the id of its first try",
                    field="id",
                ),
                **_about(self.envelope),
            )
        )


async def _answers_given(session: AsyncSession, asked: Iterable[_Asked]) -> dict[str, bytes]:
    """The answers already given to any of ``asked`` (one scope), by envelope id: the
    first answer's bytes, or a refusal if the id came with another command."""
    by_id = {each.id: each for each in asked}
    if not by_id:
        return {}
    scope = next(iter(by_id.values())).scope
    rows = await session.execute(
        select(answers_table.c.message_id, answers_table.c.request_digest, answers_table.c.reply)
        .where(answers_table.c.scope == scope)
        .where(answers_table.c.message_id.in_(by_id))
    )
    return {
        message_id: bytes(reply)
        if digest == by_id[message_id].digest
        else by_id[message_id].reused()
        for message_id, digest, reply in rows
    }


async def _record(session: AsyncSession, answered: Sequence[tuple[_Asked, bytes]]) -> None:
    """Keep each answer under its command's id, in the open transaction. A second
    answer to one id (another replica's, racing) fails on the primary key."""
    if not answered:
        return
    now = datetime.now(UTC)
    await session.execute(
        answers_table.insert(),
        [
            {
                "scope": asked.scope,
                "message_id": asked.id,
                "request_digest": asked.digest,
                "reply": reply,
                "answered_at": now,
            }
            for asked, reply in answered
        ],
    )


async def _record_alone(
    sessions: async_sessionmaker[AsyncSession], asked: _Asked, reply: bytes
) -> bytes:
    """Keep ``reply`` (a refusal, whose own transaction was rolled back) in a transaction
    of its own; returns the answer that stands, which is another replica's if it
    answered the same id first. If the store cannot keep it, it is sent unkept."""
    try:
        async with sessions() as session, session.begin():
            given = await _answers_given(session, [asked])
            if given:
                return given[asked.id]
            await _record(session, [(asked, reply)])
    except Exception:
        given_since = await _given_alone(sessions, asked)
        if given_since is not None:
            return given_since
        log.warning(
            "could not keep the answer to %s %s", asked.envelope.type, asked.id, exc_info=True
        )
    return reply


async def _given_alone(sessions: async_sessionmaker[AsyncSession], asked: _Asked) -> bytes | None:
    """The answer already given to ``asked``, read on its own; None if there is none, or
    if the store cannot say."""
    try:
        async with sessions() as session:
            return (await _answers_given(session, [asked])).get(asked.id)
    except Exception:
        log.warning(
            "could not read the answer to %s %s", asked.envelope.type, asked.id, exc_info=True
        )
        return None


class _Writes:
    """Whether a session wrote anything: ran a statement other than a SELECT (Core or
    ORM, text included) or flushed ORM changes. A handler that did neither, and
    published nothing, answered a query."""

    def __init__(self, session: AsyncSession) -> None:
        self.seen = False
        event.listen(session.sync_session, "do_orm_execute", self._executed)
        event.listen(session.sync_session, "after_flush", self._flushed)

    def _executed(self, state: ORMExecuteState) -> None:
        if not state.is_select:
            self.seen = True

    def _flushed(self, _session: Session, _flush: UOWTransaction) -> None:
        self.seen = True


# Answers too large for one message.

HEADER_ROOM = 1024  # bytes of a reply message left for its headers


class _TooLarge(Exception):
    """Raised inside a command's transaction, rolling it back, when its answer would not
    fit in one message."""

    def __init__(self, size: int, max_payload: int) -> None:
        super().__init__(f"an answer of {size} bytes; a message carries {max_payload}")
        self.size = size
        self.max_payload = max_payload

    def reply(self, envelope: Envelope) -> Reply:
        return Reply(
            ok=False,
            error=CommandError(
                code="too_large",
                message=f"the answer to {envelope.type} would take {self.size:,} bytes, more "
                f"than one message carries ({self.max_payload:,}); nothing was changed. Ask "
                "for less: a page at a time where the command pages its answer, or a "
                "narrower query",
            ),
            **_about(envelope),
        )


def _fits(reply: bytes, max_payload: int | None) -> None:
    """Raise _TooLarge unless ``reply`` fits in a message of ``max_payload`` bytes (None: any)."""
    if max_payload is not None and len(reply) > max_payload - HEADER_ROOM:
        raise _TooLarge(len(reply), max_payload)


# Batches: one writer per command, answering everything that queued while it wrote.

BatchAnswer = dict[str, Any] | Refused
BatchHandler = Callable[[Sequence[tuple[Any, CommandContext]]], Awaitable[list[BatchAnswer]]]
Respond = Callable[[bytes], Awaitable[None]]


class _Collecting(Publisher):
    """A command's facts, kept aside until the batch knows which commands were refused,
    then written with everyone else's in one statement."""

    def __init__(self, session: AsyncSession, causation: Envelope) -> None:
        super().__init__(session, causation)
        self.facts: list[tuple[Envelope, str]] = []

    async def __call__(self, message: Message, *, id: str | None = None) -> Envelope:
        envelope = Envelope.wrap(message, id=id, causation=self._causation)
        self.facts.append((envelope, message.SUBJECT))
        self.published.append(envelope)
        return envelope


@dataclass(frozen=True)
class _Waiting:
    command: Message
    envelope: Envelope
    respond: Respond
    asked: _Asked


class CommandBatcher:
    """Answers one command through a single writer, a batch per transaction.

    Requests queue in the order they arrive. The writer takes the oldest of them,
    refuses at once any that is not a valid command, runs the batch handler on the rest
    in one transaction with the facts of every command it accepted in that
    transaction's outbox, commits, and only then answers each. What arrives meanwhile
    waits for the next batch, so the busier the command, the bigger the batches, and
    one commit serves many requests.

    A batch takes a sixth of those waiting, at least ``MIN_BATCH`` (all of them if
    fewer) and at most ``max_batch``: a rush is answered in big commits first and
    smaller ones as it drains, so its answers keep leaving every few milliseconds
    instead of in a few big bursts, while a commit (which costs about as much as a
    dozen commands) is still shared by many. ``max_batch`` bounds how long one batch
    holds its locks.

    The batch handler gets the commands in arrival order, each with its own
    context (the shared session, its envelope, a publisher of its own) and returns
    one answer per command: the reply's data, or a ``Refused``. It decides every
    command before it writes anything, so a refused one leaves no trace and does
    not fail the others; its facts, if it published any, are dropped. If the batch
    fails otherwise (an error, a constraint, the commit), nothing of it was
    committed and each of its commands is run again alone, in order, so only the
    one at fault fails.

    Every answer the handler gives, refusals included, is kept by envelope id in the
    batch's transaction (``answer_once`` says what for). A command whose id was
    answered before, in an earlier batch or on another replica sharing the store, is
    answered with those bytes and not given to the handler; a retry queued in the same
    batch as its first try gets the first try's answer. Two replicas answering one id
    at once on PostgreSQL collide on the answer's primary key: that batch fails, and
    run alone the command finds the other's answer.

    ``on_commit`` (waking the outbox relay) is called once the writer has caught up
    rather than after every commit: in a rush, answering comes first, and the relay
    still finds the facts on its own poll if the rush goes on. ``max_payload`` says
    how many bytes a message may carry now (None: no limit): a command whose answer
    would be longer is answered ``too_large`` and changes nothing.
    """

    MAX_BATCH = 256
    MIN_BATCH = 16
    SHARE = 6  # a batch takes this fraction of the queue (1/SHARE)

    def __init__(
        self,
        *,
        model: type[Message],
        handler: BatchHandler,
        sessions: async_sessionmaker[AsyncSession],
        on_commit: Callable[[], None],
        max_batch: int = MAX_BATCH,
        max_payload: Callable[[], int | None] = lambda: None,
    ) -> None:
        self._model = model
        self._handler = handler
        self._sessions = sessions
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._max_payload = max_payload
        self._arrived: deque[tuple[bytes, Respond]] = deque()
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0
        self.answered = 0

    def submit(self, raw: bytes, respond: Respond) -> None:
        """Queue a request in its turn; ``respond`` gets the answer's bytes."""
        self._arrived.append((raw, respond))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name=f"batch {self._model.TYPE}")

    async def drain(self) -> None:
        """Wait until every request queued so far has been answered."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait({self._writer})

    async def _write(self) -> None:
        # Ends when nothing waits; the next request starts another writer.
        committed = False
        while self._arrived:
            taken = [self._arrived.popleft() for _ in range(self._batch_size())]
            batch: list[_Waiting] = []
            first_tries: dict[str, _Waiting] = {}
            retries: list[tuple[_Waiting, _Waiting]] = []  # (retry, its first try)
            for raw, respond in taken:
                read = read_command(raw, self._model)
                if isinstance(read, Reply):
                    await _send(respond, _wire(read))
                    continue
                command, envelope = read
                waiting = _Waiting(command, envelope, respond, _Asked(self._model, *read))
                if envelope.id in first_tries:
                    retries.append((waiting, first_tries[envelope.id]))
                else:
                    first_tries[envelope.id] = waiting
                    batch.append(waiting)
            replies, wrote = await self._answer(batch) if batch else ([], False)
            committed = committed or wrote
            self.batches += 1
            self.answered += len(taken)
            answered: dict[str, bytes] = {}
            for waiting, reply in zip(batch, replies, strict=True):
                await _send(waiting.respond, reply)
                answered[waiting.envelope.id] = reply
            for retry, first_try in retries:
                same = retry.asked.digest == first_try.asked.digest
                await _send(
                    retry.respond, answered[retry.envelope.id] if same else retry.asked.reused()
                )
            if committed and not self._arrived:
                self._on_commit()
                committed = False

    def _batch_size(self) -> int:
        waiting = len(self._arrived)
        return min(waiting, self._max_batch, max(self.MIN_BATCH, waiting // self.SHARE))

    async def _answer(self, batch: list[_Waiting]) -> tuple[list[bytes], bool]:
        """The replies to ``batch``, and whether it committed any facts."""
        try:
            return await self._in_one_transaction(batch)
        except Refused as refusal:
            if len(batch) == 1:
                [waiting] = batch
                refused = Reply(ok=False, error=refusal.error, **_about(waiting.envelope))
                return [await _record_alone(self._sessions, waiting.asked, _wire(refused))], False
        except _TooLarge as too_large:
            if len(batch) == 1:
                return [_wire(too_large.reply(batch[0].envelope))], False
        except Exception:
            if len(batch) == 1:
                [waiting] = batch
                given_since = await _given_alone(self._sessions, waiting.asked)
                if given_since is not None:
                    return [given_since], False
                log.exception("%s %s failed", waiting.envelope.type, waiting.envelope.id)
                return [_wire(_internal_error(waiting.envelope))], False
            log.exception(
                "a batch of %d %s failed; answering each alone", len(batch), self._model.TYPE
            )
        replies, wrote = [], False
        for waiting in batch:
            (reply,), facts = await self._answer([waiting])
            replies.append(reply)
            wrote = wrote or facts
        return replies, wrote

    async def _in_one_transaction(self, batch: list[_Waiting]) -> tuple[list[bytes], bool]:
        max_payload = self._max_payload()
        async with self._sessions() as session, session.begin():
            given = await _answers_given(session, [waiting.asked for waiting in batch])
            fresh = [waiting for waiting in batch if waiting.envelope.id not in given]
            answered: dict[str, bytes] = {}
            facts: list[tuple[Envelope, str]] = []
            if fresh:
                collected = [_Collecting(session, waiting.envelope) for waiting in fresh]
                answers = await self._handler(
                    [
                        (waiting.command, CommandContext(session, waiting.envelope, publish))
                        for waiting, publish in zip(fresh, collected, strict=True)
                    ]
                )
                if len(answers) != len(fresh):
                    raise RuntimeError(f"{len(answers)} answers to a batch of {len(fresh)}")
                facts = [
                    fact
                    for publish, answer in zip(collected, answers, strict=True)
                    if not isinstance(answer, Refused)
                    for fact in publish.facts
                ]
                for waiting, answer in zip(fresh, answers, strict=True):
                    reply = _wire(
                        Reply(ok=False, error=answer.error, **_about(waiting.envelope))
                        if isinstance(answer, Refused)
                        # The handler's own dict: nothing in it for Reply to check.
                        else Reply.model_construct(
                            ok=True, data=answer, error=None, **_about(waiting.envelope)
                        )
                    )
                    _fits(reply, max_payload)
                    answered[waiting.envelope.id] = reply
                await outbox.add_many(session, facts)
                await _record(
                    session, [(waiting.asked, answered[waiting.envelope.id]) for waiting in fresh]
                )
        return [
            given[waiting.envelope.id]
            if waiting.envelope.id in given
            else answered[waiting.envelope.id]
            for waiting in batch
        ], bool(facts)


async def _send(respond: Respond, reply: bytes) -> None:
    try:
        await respond(reply)
    except Exception as error:  # the requester's connection went; what was committed stays
        log.warning("could not answer a request: %s", error)


async def request(client: Client, command: Message, *, timeout: float = 10.0) -> dict[str, Any]:
    """Send ``command`` and return the reply's data; raises CommandFailed or ServiceUnavailable."""
    reply = await request_raw(
        client, command.SUBJECT, Envelope.wrap(command).to_bytes(), timeout=timeout
    )
    if not reply.ok:
        assert reply.error is not None
        raise CommandFailed(reply.error)
    return reply.data or {}


async def request_raw(
    client: Client,
    subject: str,
    payload: bytes,
    *,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
) -> Reply:
    try:
        response = await client.request(subject, payload, timeout=timeout, headers=headers)
    except nats.errors.NoRespondersError:
        raise ServiceUnavailable(
            f"nothing answers {subject}: is the {subject.split('.')[0]} service running?"
        ) from None
    except nats.errors.TimeoutError:
        raise ServiceUnavailable(f"no answer on {subject} within {timeout:.0f}s") from None
    return Reply.model_validate_json(response.data)


def command_model(subject: str) -> type[Message]:
    for spec in REGISTRY.all():
        if spec.subject == subject and spec.kind == "command":
            return spec.model
    raise UnknownMessage(f"no command is registered on {subject}")
