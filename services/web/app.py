"""The web service's wiring: routes, the door's middleware, and the NATS connection
it owns for its lifetime. Nothing here decides anything."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from contracts.system_v1 import HealthReport, health_subject
from kernel import production
from kernel.settings import Settings
from kernel.store import redacted
from services.web import NAME, errors
from services.web.flights import SingleFlight
from services.web.gateway import Gateway
from services.web.office import app as office
from services.web.pages import booking, bookings, events, pay, unsubscribe
from services.web.rendering import pages
from services.web.security import RateLimit, SecureDoor
from services.web.settings import WebSettings

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


async def home(request: Request) -> Response:
    return RedirectResponse(request.url_for("programme"), status_code=302)


async def healthz(request: Request) -> Response:
    """For load balancers: up while the door holds its NATS connection."""
    client: Client = request.app.state.nats
    if client.is_connected:
        return PlainTextResponse("ok")
    return PlainTextResponse("no NATS connection", status_code=503)


def health_answer(store_url: str) -> Callable[[Msg], Awaitable[None]]:
    """`vestry status` asks every process over NATS; the door's store holds staff accounts
    and sessions only, and it has no outbox and no consumers."""
    report = (
        HealthReport(
            service=NAME,
            version="1",
            pid=os.getpid(),
            store=redacted(store_url),
            outbox_unsent=0,
            consumers=[],
        )
        .model_dump_json()
        .encode()
    )

    async def answer(msg: Msg) -> None:
        await msg.respond(report)

    return answer


def create_app(settings: Settings | None = None, web: WebSettings | None = None) -> ASGIApp:
    settings = settings or Settings()
    web = web or WebSettings()
    production.require(settings, NAME, keys={"VESTRY_WEB_COOKIE_SECRET": web.cookie_secret})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = await nats.connect(
            settings.nats_url.split(","),
            name="vestry-web",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            inbox_prefix=settings.inbox_prefix(),  # the web user's own inbox only
        )
        app.state.nats = client
        app.state.gateway = Gateway(client, timeout=web.command_timeout_s)
        await client.subscribe(
            health_subject(NAME),
            queue=NAME,
            cb=health_answer(web.db or settings.database_url(NAME)),
        )
        log.info(
            "web service up; commands go to %s",
            ", ".join(redacted(url) for url in settings.nats_url.split(",")),
        )
        async with office.running(app.state, settings, web, client):  # staff store, staff commands
            try:
                yield
            finally:
                await client.drain()

    app = Starlette(
        routes=[
            Route("/", home),
            Route("/healthz", healthz),
            *events.routes,
            *booking.routes,
            *bookings.routes,
            *unsubscribe.routes,
            *pay.routes,
            office.mount,
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers=errors.HANDLERS,  # type: ignore[arg-type]
        lifespan=lifespan,
    )
    app.state.pages = pages(settings.partnership_name)
    app.state.flights = SingleFlight()
    app.state.link_secret = settings.link_secret
    app.state.link_secret_unsubscribe = settings.unsubscribe_secret
    app.state.booking_limit = RateLimit(web.bookings_per_minute)
    app.state.lookup_limit = RateLimit(web.lookups_per_minute)
    # Paying invoices online: the return address, webhooks' key, card payments started.
    app.state.public_url = settings.public_url
    app.state.pay_webhook_secret = settings.pay_webhook_secret
    app.state.payment_limit = RateLimit(web.bookings_per_minute)
    return SecureDoor(app, secret=web.cookie_secret, secure_cookies=web.secure_cookies)


def serve() -> None:
    """Run the site under uvicorn, believing forwarded headers only from the named proxies."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings, web = Settings(), WebSettings()
    production.refuse_unsafe_start(
        settings, NAME, keys={"VESTRY_WEB_COOKIE_SECRET": web.cookie_secret}
    )
    uvicorn.run(
        create_app(settings, web),
        host=web.host,
        port=web.port,
        proxy_headers=True,
        forwarded_allow_ips=web.forwarded_allow_ips,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
        # Longer than the proxy's own keep-alive (nginx: 60 s), so the proxy never
        # sends a request down a connection uvicorn is closing.
        timeout_keep_alive=75,
    )
