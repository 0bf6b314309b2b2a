"""Commands that ask another system first (a payment provider's API) and then record
what it said.

A service's command runs in one transaction (``kernel.commands.answer_once``); on
SQLite that transaction holds the store's write lock from its first statement. A
command that waited on an outside API inside it would hold every other writer of
the service for as long as the API takes to answer. Such a command is answered in
three steps instead: ``prepare`` reads what it needs in a short session of its own
and calls out with no transaction open, then returns the handler that records the
outcome, which runs through ``answer_once`` like any command (one transaction, its
answer kept by envelope id, its facts in the outbox).

A refusal from ``prepare`` changes nothing and is not kept: a retry calls out again,
which is why such commands must be safe to call out for twice (an idempotency key,
or a read).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from faststream.exceptions import SkipMessage
from faststream.nats import NatsResponse
from faststream.nats.annotations import NatsMessage

from contracts import Message
from contracts.system_v1 import Reply
from kernel import commands
from kernel.runtime import Service

Prepare = Callable[[Any], Awaitable[commands.CommandHandler]]


def command_calling_out(service: Service, model: type[Message], prepare: Prepare) -> None:
    """Answer ``model`` on its subject (every replica in one queue group): ``prepare`` the
    command outside any transaction, then run the handler it returns in one."""

    async def endpoint(msg: NatsMessage) -> NatsResponse:
        if not commands.answerable(msg.reply_to):
            raise SkipMessage
        read = commands.read_command(msg.body, model)
        if isinstance(read, Reply):
            return _response(read.model_dump_json().encode())
        command, envelope = read
        try:
            handler = await prepare(command)
        except commands.Refused as refusal:
            refused = Reply(
                ok=False,
                error=refusal.error,
                request_id=envelope.id,
                correlation_id=envelope.correlation_id,
            )
            return _response(refused.model_dump_json().encode())
        reply = await commands.answer_once(
            msg.body,
            model=model,
            handler=handler,
            sessions=service.sessions,
            on_commit=service.wake_relay,
            max_payload=service.max_payload(),
            reply_to=msg.reply_to,
        )
        return _response(reply)

    endpoint.__name__ = f"{service.name}_{model.TYPE}"
    service.broker.subscriber(
        model.SUBJECT, queue=service.name, title=model.SUBJECT, decoder=_as_bytes
    )(endpoint)


def _response(reply: bytes) -> NatsResponse:
    return NatsResponse(reply, headers={"content-type": "application/json"})


async def _as_bytes(msg: NatsMessage) -> bytes:
    """The body as it came: ``kernel.commands`` parses it."""
    return msg.body
