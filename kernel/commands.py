"""Commands over request/reply: every answer is a ``Reply``; a refusal carries a
structured error (code, message, field) and changes nothing."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts import REGISTRY, Envelope, Message, UnknownMessage
from contracts.system_v1 import CommandError, Reply
from kernel import outbox
from kernel.outbox import Publisher

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
    """``raw`` as an envelope of ``model`` and its command, or the Reply refusing it."""
    try:
        envelope = Envelope.from_bytes(raw)
    except ValidationError as error:
        return Reply(ok=False, error=validation_error(error))
    if (envelope.type, envelope.version) != (model.TYPE, model.VERSION):
        return Reply(
            ok=False,
            error=CommandError(
                code="unsupported",
                message=f"{model.SUBJECT} takes {model.TYPE} v{model.VERSION}, not {envelope.type} v{envelope.version}",
            ),
        )
    try:
        command = model.model_validate(envelope.data)
    except ValidationError as error:
        return Reply(ok=False, error=validation_error(error))
    return command, envelope


async def answer(
    raw: bytes,
    *,
    model: type[Message],
    handler: CommandHandler,
    sessions: async_sessionmaker[AsyncSession],
    on_commit: Callable[[], None],
) -> Reply:
    """Validate ``raw`` as an envelope of ``model``, run the handler in one transaction, reply."""
    read = read_command(raw, model)
    if isinstance(read, Reply):
        return read
    command, envelope = read
    try:
        async with sessions() as session, session.begin():
            data = await handler(
                command, CommandContext(session, envelope, Publisher(session, envelope))
            )
    except Refused as refusal:
        return Reply(ok=False, error=refusal.error)
    except Exception:
        log.exception("%s %s failed", envelope.type, envelope.id)
        return _internal_error(envelope)
    on_commit()
    return Reply(ok=True, data=data)


def _internal_error(envelope: Envelope) -> Reply:
    return Reply(
        ok=False,
        error=CommandError(
            code="internal",
            message=f"{envelope.type} failed inside the service; nothing was changed",
        ),
    )


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

    ``on_commit`` (waking the outbox relay) is called once the writer has caught up
    rather than after every commit: in a rush, answering comes first, and the relay
    still finds the facts on its own poll if the rush goes on.
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
    ) -> None:
        self._model = model
        self._handler = handler
        self._sessions = sessions
        self._on_commit = on_commit
        self._max_batch = max_batch
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
            batch = []
            for raw, respond in taken:
                read = read_command(raw, self._model)
                if isinstance(read, Reply):
                    await _send(respond, read)
                else:
                    batch.append(_Waiting(read[0], read[1], respond))
            replies, wrote = await self._answer(batch) if batch else ([], False)
            committed = committed or wrote
            self.batches += 1
            self.answered += len(taken)
            for waiting, reply in zip(batch, replies, strict=True):
                await _send(waiting.respond, reply)
            if committed and not self._arrived:
                self._on_commit()
                committed = False

    def _batch_size(self) -> int:
        waiting = len(self._arrived)
        return min(waiting, self._max_batch, max(self.MIN_BATCH, waiting // self.SHARE))

    async def _answer(self, batch: list[_Waiting]) -> tuple[list[Reply], bool]:
        """The replies to ``batch``, and whether it committed any facts."""
        try:
            return await self._in_one_transaction(batch)
        except Refused as refusal:
            if len(batch) == 1:
                return [Reply(ok=False, error=refusal.error)], False
        except Exception:
            if len(batch) == 1:
                log.exception("%s %s failed", batch[0].envelope.type, batch[0].envelope.id)
                return [_internal_error(batch[0].envelope)], False
            log.exception(
                "a batch of %d %s failed; answering each alone", len(batch), self._model.TYPE
            )
        replies, wrote = [], False
        for waiting in batch:
            (reply,), facts = await self._answer([waiting])
            replies.append(reply)
            wrote = wrote or facts
        return replies, wrote

    async def _in_one_transaction(self, batch: list[_Waiting]) -> tuple[list[Reply], bool]:
        async with self._sessions() as session, session.begin():
            collected = [_Collecting(session, waiting.envelope) for waiting in batch]
            answers = await self._handler(
                [
                    (waiting.command, CommandContext(session, waiting.envelope, publish))
                    for waiting, publish in zip(batch, collected, strict=True)
                ]
            )
            if len(answers) != len(batch):
                raise RuntimeError(f"{len(answers)} answers to a batch of {len(batch)}")
            facts = [
                fact
                for publish, given in zip(collected, answers, strict=True)
                if not isinstance(given, Refused)
                for fact in publish.facts
            ]
            await outbox.add_many(session, facts)
        return [
            Reply(ok=False, error=given.error)
            if isinstance(given, Refused)
            # The handler's own dict: nothing in it for Reply to check.
            else Reply.model_construct(ok=True, data=given, error=None)
            for given in answers
        ], bool(facts)


async def _send(respond: Respond, reply: Reply) -> None:
    try:
        await respond(reply.model_dump_json().encode())
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
    client: Client, subject: str, payload: bytes, *, timeout: float = 10.0
) -> Reply:
    try:
        response = await client.request(subject, payload, timeout=timeout)
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
