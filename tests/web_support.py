"""The public site as a person meets it: the three services and the web service under
uvicorn on a free port, all real, in this event loop."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import uvicorn
from nats.aio.client import Client

from contracts.money import Money
from kernel.runtime import Service
from kernel.settings import Settings
from services.web.app import create_app
from services.web.settings import WebSettings
from tests.events_support import _answering, published_event
from tests.stack import stack
from vestry.natsserver import free_port


@dataclass
class Site:
    url: str
    subscriptions: Service
    events: Service
    notifications: Service


def site_settings(**overrides: Any) -> WebSettings:
    """The door as tests meet it: plain HTTP on loopback, limits high unless a test lowers them."""
    fields: dict[str, Any] = {
        "secure_cookies": False,
        "cookie_secret": "test-cookie-secret",
        "bookings_per_minute": 1000,
        "lookups_per_minute": 10,
    }
    fields.update(overrides)
    return WebSettings(**fields)


@asynccontextmanager
async def running_site(
    settings: Settings, web: WebSettings | None = None, *, port: int | None = None
) -> AsyncIterator[Site]:
    async with stack(settings) as (subscriptions, events, notifications):
        await _answering(settings.nats_url)
        port = port or free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings, web or site_settings()),
                host="127.0.0.1",
                port=port,
                log_level="warning",
                lifespan="on",
                # As in production: idle connections outlive the client's, so a client never
                # reuses one the server is closing (a ReadError under load).
                timeout_keep_alive=75,
            )
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.02)
        try:
            yield Site(f"http://127.0.0.1:{port}", subscriptions, events, notifications)
        finally:
            server.should_exit = True
            await serving


def soon(days: int = 30) -> datetime:
    """A London morning ``days`` from now, so the site lists the event as upcoming."""
    day = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    return day + timedelta(days=days)


async def upcoming_event(nc: Client, **overrides: Any) -> str:
    start = overrides.pop("starts_at", soon())
    fields: dict[str, Any] = {
        "starts_at": start,
        "ends_at": start + timedelta(hours=3),
        "member_price": Money(amount_minor=0),
        "non_member_price": Money(amount_minor=9500),
    }
    fields.update(overrides)
    return await published_event(nc, **fields)


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def form_token(client: httpx.AsyncClient, path: str) -> str:
    """GET a form page and return its CSRF token (the client keeps the cookie)."""
    page = await client.get(path)
    page.raise_for_status()
    found = CSRF.search(page.text)
    assert found, f"{path} has no CSRF token"
    return found.group(1)
