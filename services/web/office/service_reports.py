"""What each service says of itself when staff ask: its health (unsent facts, work owed,
consumers' lag) and its dead letters. Operators' requests carry no envelope: the body
is the request and the staff member rides in the headers, as the services record them."""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
from pydantic import BaseModel
from starlette.requests import Request

from contracts import new_message_id
from contracts.system_v1 import (
    SERVICES,
    DeadLettersReport,
    DeadLettersRequest,
    HealthReport,
    Reply,
    dead_letters_subject,
    health_subject,
)
from kernel.audit import ACTOR_HEADER, REQUEST_ID_HEADER
from kernel.commands import CommandFailed, ServiceUnavailable
from services.web.office.door import actor_address


async def service_health(request: Request) -> list[dict[str, Any]]:
    """Each service's own report of its consumers' lag and its unsent facts."""

    async def one(name: str) -> dict[str, Any]:
        try:
            reply = await request.app.state.nats.request(health_subject(name), b"", timeout=2)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            return {"service": name, "up": False, "report": None}
        return {"service": name, "up": True, "report": HealthReport.model_validate_json(reply.data)}

    return list(await asyncio.gather(*(one(name) for name in SERVICES)))


async def operate(
    request: Request, subject: str, asked: BaseModel, *, timeout: float | None = None
) -> dict[str, Any]:
    """Send an operator's request (no envelope: its body is ``asked``) with the staff
    member in its headers, as the services record them; the answer's data."""
    staff = request.state.staff
    headers = {
        ACTOR_HEADER: staff.actor(actor_address(request)).model_dump_json(),
        REQUEST_ID_HEADER: new_message_id(),
    }
    try:
        answer = await request.app.state.nats.request(
            subject,
            asked.model_dump_json().encode(),
            timeout=timeout or request.app.state.office.timeout,
            headers=headers,
        )
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        raise ServiceUnavailable(f"nothing answered {subject}") from None
    reply = Reply.model_validate_json(answer.data)
    if not reply.ok:
        assert reply.error is not None
        raise CommandFailed(reply.error)
    return reply.data or {}


async def letters_of(
    request: Request, service: str, asked: DeadLettersRequest
) -> DeadLettersReport | None:
    """A service's dead letters as it lists them; None if it does not answer."""
    try:
        return DeadLettersReport.model_validate(
            await operate(request, dead_letters_subject(service), asked)
        )
    except ServiceUnavailable:
        return None
