"""The audit stream (OPS): an ``ActionRecorded`` for each action, naming who asked for it.

Who: the staff member on the request's envelope (``actor``) when a back-office page sent
it; otherwise the NATS user whose inbox the request's reply subject names. In production
each NATS user may subscribe only to its own ``_INBOX_<user>.>``
(deploy/nats/accounts.conf, ``kernel.settings.inbox_prefix``), so that user is the only
one who can receive the answer. It is not proof of who sent the request: a user allowed
to send a command may name another's inbox as its reply subject (and never see the
answer). Under ``vestry dev`` there are no users and replies come under plain
``_INBOX``: the user is then "development".

A service records through its outbox (``CommandContext.record_action``, and
``kernel.runtime`` for replays, redrives and rebuilds); the web service, which has no
outbox, and the CLI publish to OPS themselves with ``publish``.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import NoStreamResponseError, NotFoundError
from pydantic import ValidationError

from contracts import Envelope
from contracts.audit_v1 import DEVELOPMENT, ActionBy, ActionRecorded
from contracts.envelope import Actor, derived_message_id
from kernel.settings import DEFAULT_INBOX_PREFIX, inbox_prefix
from kernel.streams import OPS_STREAM, STREAMS, ensure_streams

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
# Headers of an operator's replay, redrive or rebuild request, which is no envelope.
REQUEST_ID_HEADER = "Vestry-Request-Id"
ACTOR_HEADER = "Vestry-Actor"  # an Actor as JSON, as an envelope would carry it

[OPS] = [spec for spec in STREAMS if spec.name == OPS_STREAM]


def nats_user_of_reply(reply: str | None) -> str:
    """The NATS user whose inbox ``reply`` is: ``_INBOX_operator.abc`` → operator,
    ``_INBOX.abc`` → development; unknown for no reply subject."""
    if not reply:
        return UNKNOWN
    prefix = reply.split(".", 1)[0]
    if prefix == DEFAULT_INBOX_PREFIX:
        return DEVELOPMENT
    return prefix.removeprefix(f"{DEFAULT_INBOX_PREFIX}_") or UNKNOWN


def nats_user_of_url(url: str, explicit_prefix: str | None = None) -> str:
    """The NATS user a client connecting to ``url`` takes its replies as (the CLI's own)."""
    return nats_user_of_reply(f"{inbox_prefix(url, explicit_prefix)}.x")


def performer(actor: Actor | None, reply: str | None) -> ActionBy:
    """Who an action is recorded against: the staff member on the envelope, else the
    NATS user the reply subject names."""
    user = nats_user_of_reply(reply)
    if actor is not None:
        return ActionBy(
            kind="staff", name=actor.name, staff_id=actor.id, address=actor.address, nats_user=user
        )
    return ActionBy(kind="nats_user", name=user, nats_user=user)


def actor_in(headers: Mapping[str, str]) -> Actor | None:
    """The staff member a bare request (a replay, redrive or rebuild) names in its
    ``Vestry-Actor`` header, as an envelope would carry them; None if it names nobody
    or names them unreadably (the request is then recorded as its NATS user's)."""
    given = headers.get(ACTOR_HEADER)
    if not given:
        return None
    try:
        return Actor.model_validate_json(given)
    except ValidationError:
        log.warning("a request's %s header is not an actor; recorded without one", ACTOR_HEADER)
        return None


def action_recorded(
    action: str,
    *,
    service: str,
    by: ActionBy,
    target: str | None = None,
    filters: dict[str, Any] | None = None,
    result: dict[str, Any] | None = None,
    dry_run: bool = False,
    request_id: str | None = None,
) -> ActionRecorded:
    return ActionRecorded(
        action=action,
        service=service,
        target=target,
        filters=filters or {},
        result=result or {},
        dry_run=dry_run,
        request_id=request_id,
        by=by,
        host=socket.gethostname(),
    )


def record_id(service: str, action: str, request_id: str) -> str:
    """The record's message id, fixed by the request: a request carried out again (a
    retry the service does not remember) makes the same id, which JetStream drops
    within its duplicate window."""
    return derived_message_id("ActionRecorded", service, action, request_id)


async def ensure_ops_stream(
    js: JetStreamContext, *, duplicate_window_s: float, replicas: int
) -> None:
    """OPS, created as the services and the admin declare it if it is missing; never changed."""
    await ensure_streams(
        js, duplicate_window_s=duplicate_window_s, replicas=replicas, streams=[OPS]
    )


async def publish(
    js: JetStreamContext,
    records: Sequence[Envelope],
    *,
    duplicate_window_s: float,
    replicas: int,
) -> None:
    """Store ``records`` in OPS, each under its own id (``Nats-Msg-Id``), creating OPS
    first if it is missing; raises if JetStream does not confirm one."""
    for envelope in records:
        try:
            await _publish(js, envelope)
        except (NoStreamResponseError, NotFoundError):
            await ensure_ops_stream(js, duplicate_window_s=duplicate_window_s, replicas=replicas)
            await _publish(js, envelope)


async def _publish(js: JetStreamContext, envelope: Envelope) -> None:
    await js.publish(
        ActionRecorded.SUBJECT,
        envelope.to_bytes(),
        stream=OPS_STREAM,
        headers={"Nats-Msg-Id": envelope.id},
    )
