"""Commands over request/reply: every answer is a ``Reply``; a refusal carries a
structured error (code, message, field) and changes nothing."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts import REGISTRY, Envelope, Message, UnknownMessage
from contracts.system_v1 import CommandError, Reply
from kernel.outbox import Publisher

log = logging.getLogger(__name__)


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


async def answer(
    raw: bytes,
    *,
    model: type[Message],
    handler: CommandHandler,
    sessions: async_sessionmaker[AsyncSession],
    on_commit: Callable[[], None],
) -> Reply:
    """Validate ``raw`` as an envelope of ``model``, run the handler in one transaction, reply."""
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
    try:
        async with sessions() as session, session.begin():
            data = await handler(
                command, CommandContext(session, envelope, Publisher(session, envelope))
            )
    except Refused as refusal:
        return Reply(ok=False, error=refusal.error)
    except Exception:
        log.exception("%s %s failed", envelope.type, envelope.id)
        return Reply(
            ok=False,
            error=CommandError(
                code="internal",
                message=f"{envelope.type} failed inside the service; nothing was changed",
            ),
        )
    on_commit()
    return Reply(ok=True, data=data)


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
