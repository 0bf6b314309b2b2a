"""Helpers for the notifications tests: quick settings, SMTP servers that misbehave on
purpose, a local GOV.UK Notify, and reading the ledger and the facts."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jwt
import phonenumbers
import uvicorn
from aiosmtpd.controller import Controller
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from sqlalchemy import insert, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from contracts import Envelope
from kernel import migrations
from kernel.runtime import Service
from kernel.settings import Settings
from services.notifications import store
from services.notifications.app import MIGRATIONS
from services.notifications.directory import contact_id_for
from tests.sealed import opened
from vestry.mailcapture import CaptureHandler
from vestry.natsserver import free_port


def quick(settings: Settings, **overrides: Any) -> Settings:
    """Settings for a test: no quiet hours, retries within a second, no pacing."""
    values: dict[str, Any] = {
        "quiet_hours": "",
        "delivery_retry_s": [0.1, 0.2, 0.4],
        "email_rate_per_s": 1000.0,
        "sms_rate_per_s": 1000.0,
    }
    values.update(overrides)
    return settings.model_copy(update=values)


class ScriptedSmtp(CaptureHandler):
    """Answers RCPT with the scripted replies in turn, then accepts (and captures) the rest."""

    def __init__(self, directory: Path, replies: list[str]) -> None:
        super().__init__(directory)
        self.replies = list(replies)
        self.rcpt_seen = 0

    async def handle_RCPT(  # type: ignore[no-untyped-def]
        self, server, session, envelope, address, rcpt_options
    ) -> str:
        self.rcpt_seen += 1
        if self.replies:
            return self.replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"


@asynccontextmanager
async def scripted_smtp(
    directory: Path, replies: list[str]
) -> AsyncIterator[tuple[int, ScriptedSmtp]]:
    handler = ScriptedSmtp(directory, replies)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, handler
    finally:
        controller.stop()


# A local GOV.UK Notify: the documented v2 SMS endpoint, its auth and its errors.

NOTIFY_SERVICE_ID = "26785a09-ab16-4eb0-8407-a37497a57506"
NOTIFY_SECRET = "3d844edf-8d35-48ac-975b-e847b4f122b0"
NOTIFY_API_KEY = f"vestry_test-{NOTIFY_SERVICE_ID}-{NOTIFY_SECRET}"
NOTIFY_TEMPLATE_ID = "f33517ff-2a88-4f6e-b855-c550268ce08a"


class FakeNotify:
    """``POST /v2/notifications/sms`` as GOV.UK Notify documents it.

    Checks the bearer JWT (HS256 with the key's secret, ``iss`` the service id,
    ``iat`` within 30 s), answers 403 AuthError otherwise; 400 ValidationError
    for a number that is not a UK mobile; 400 BadRequestError for an unknown
    template; 201 with the notification otherwise. ``fail_next`` answers that
    many requests with 500 first.
    """

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail_next = 0
        self.port = free_port()
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Serve on ``port`` under uvicorn, in this event loop, until ``stop``."""
        app = Starlette(routes=[Route("/v2/notifications/sms", self._sms, methods=["POST"])])
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                lifespan="off",
                # Idle connections outlive the client's (httpx keeps one 5 s), so the
                # gateway never reuses one the fake is closing.
                timeout_keep_alive=75,
            )
        )
        self._serving = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._serving.done():
                self._serving.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            await self._serving
            self._server = self._serving = None

    @staticmethod
    def _error(status: int, error: str, message: str) -> JSONResponse:
        body = {"errors": [{"error": error, "message": message}], "status_code": status}
        return JSONResponse(body, status_code=status)

    async def _sms(self, request: Request) -> JSONResponse:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return self._error(
                401, "AuthError", "Unauthorized: authentication token must be provided"
            )
        try:
            claims = jwt.decode(auth[7:], NOTIFY_SECRET, algorithms=["HS256"])
        except jwt.PyJWTError:
            return self._error(403, "AuthError", "Invalid token: signature, api token not found")
        if claims.get("iss") != NOTIFY_SERVICE_ID or abs(time.time() - claims.get("iat", 0)) > 30:
            return self._error(403, "AuthError", "Invalid token: iss or iat")
        if self.fail_next > 0:
            self.fail_next -= 1
            return self._error(500, "Exception", "Internal server error")
        body = await request.json()
        if body.get("template_id") != NOTIFY_TEMPLATE_ID:
            return self._error(400, "BadRequestError", "Template not found")
        try:
            number = phonenumbers.parse(body.get("phone_number", ""), "GB")
            valid = phonenumbers.is_valid_number(number) and number.country_code == 44
        except phonenumbers.NumberParseException:
            valid = False
        if not valid:
            return self._error(400, "ValidationError", "phone_number Not a UK mobile number")
        self.received.append(body)
        notification_id = str(uuid.uuid4())
        return JSONResponse(
            {
                "id": notification_id,
                "reference": body.get("reference"),
                "content": {"body": body["personalisation"]["body"], "from_number": "GOVUK"},
                "uri": f"{self.url}/v2/notifications/{notification_id}",
                "template": {
                    "id": NOTIFY_TEMPLATE_ID,
                    "version": 1,
                    "uri": f"{self.url}/services/{NOTIFY_SERVICE_ID}/templates/{NOTIFY_TEMPLATE_ID}",
                },
            },
            status_code=201,
        )


# Reading what happened


async def deliveries(service: Service) -> list[store.Delivery]:
    async with service.sessions() as session:
        return list(
            await session.scalars(select(store.Delivery).order_by(store.Delivery.created_at))
        )


async def stream_facts(nc: Client, stream: str, subject: str | None = None) -> list[Envelope]:
    js = nc.jetstream()
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return []
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if not info.state.messages:
            break
        try:
            msg = await js.get_msg(stream, seq)
        except NotFoundError:
            continue
        if subject is None or msg.subject == subject:
            found.append(await opened(nc, msg.data))
    return found


async def subscribe_many(service: Service, count: int) -> None:
    """``count`` people following the warp topic, put straight in the store (its
    migrations run first, so a service started on it afterwards finds them)."""
    await migrations.upgrade(service.engine, MIGRATIONS)
    people = [
        {
            "id": contact_id_for(f"officer{n:05d}@council.example"),
            "email": f"officer{n:05d}@council.example",
            "name": f"Officer {n:05d}",
            "source": "cli",
        }
        for n in range(count)
    ]
    async with service.sessions() as session, session.begin():
        await session.execute(insert(store.Contact), people)
        await session.execute(
            insert(store.ContactTopic),
            [{"contact_id": person["id"], "topic": "warp"} for person in people],
        )
