"""The back office's wiring: ``mount`` is the whole of /office/ behind ``StaffDoor``;
``running`` opens the web service's own store, migrates it, and answers `vestry staff …`
for as long as the site runs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from nats.aio.client import Client
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.templating import Jinja2Templates

from contracts.events_v1 import ChannelCosts
from contracts.money import Money
from kernel import migrations
from kernel.settings import Settings
from kernel.store import create_engine, redacted, session_factory
from services.web import NAME
from services.web.office import (
    alerts,
    checkin,
    events,
    invoicing,
    members,
    members_actions,
    operations,
    reports,
    sign_in,
    today,
)
from services.web.office.accounts import SESSION_COOKIE, Accounts
from services.web.office.door import StaffDoor
from services.web.office.staff import answer_staff_commands
from services.web.security import RateLimit
from services.web.settings import WebSettings

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
LONDON = ZoneInfo("Europe/London")

mount = Mount(
    "/office",
    routes=[
        *sign_in.routes,
        *today.routes,
        *members_actions.routes,  # before members: /members/new is not a member's page
        *members.routes,
        *invoicing.routes,
        *events.routes,
        *checkin.routes,
        *reports.routes,
        *alerts.routes,
        *operations.routes,
    ],
    middleware=[Middleware(StaffDoor)],
    name="office",
)


@dataclass
class Office:
    """What the back office's pages share while the site runs."""

    accounts: Accounts
    timeout: float
    secure_cookies: bool
    sign_in_limit: RateLimit
    store_url: str
    unit_costs: ChannelCosts  # what a booking costs through each channel (channel shift)

    def cookie(self, token: str, *, max_age: int | None = None) -> str:
        """The session cookie: HttpOnly, SameSite=Strict, Secure outside development,
        sent only to /office; it lasts as long as the browser unless cleared."""
        attributes = "Path=/office; HttpOnly; SameSite=Strict"
        if self.secure_cookies:
            attributes += "; Secure"
        if max_age is not None:
            attributes += f"; Max-Age={max_age}"
        return f"{SESSION_COOKIE}={token}; {attributes}"


@asynccontextmanager
async def running(
    state: Any, settings: Settings, web: WebSettings, client: Client
) -> AsyncIterator[Office]:
    """The back office's store, migrated, and its staff commands answered, until the end."""
    url = web.db or settings.database_url(NAME)
    engine = create_engine(url)
    try:
        await migrations.upgrade(engine, MIGRATIONS)
        office = Office(
            accounts=Accounts(session_factory(engine), web),
            timeout=web.command_timeout_s,
            secure_cookies=web.secure_cookies,
            sign_in_limit=RateLimit(web.sign_ins_per_minute),
            store_url=redacted(url),
            unit_costs=ChannelCosts(
                web=Money(amount_minor=web.unit_cost_web_pence),
                phone=Money(amount_minor=web.unit_cost_phone_pence),
                in_person=Money(amount_minor=web.unit_cost_in_person_pence),
            ),
        )
        add_filters(state.pages)
        state.office = office
        await answer_staff_commands(client, office.accounts, settings)
        await client.flush()  # the server knows the subscriptions before anyone is told we are up
        log.info("back office up; staff accounts in %s", office.store_url)
        yield office
    finally:
        await engine.dispose()


def pounds(pence: int | None) -> str:
    """Pence as pounds and pence, with thousands separated: 23050000 → £230,500.00."""
    if pence is None:
        return ""
    sign = "−" if pence < 0 else ""
    return f"{sign}£{abs(pence) / 100:,.2f}"


def long_date(value: str | date | None) -> str:
    """An ISO date as people write it: 2026-04-01 → 1 April 2026."""
    if not value:
        return ""
    day = date.fromisoformat(value[:10]) if isinstance(value, str) else value
    return f"{day.day} {day:%B %Y}"


def london_minute(value: str | None) -> str:
    """A UTC instant (ISO 8601) as the partnership reads it: 2026-07-01T09:05:00+00:00 →
    1 Jul 2026, 10:05 (UK time)."""
    if not value:
        return ""
    moment = datetime.fromisoformat(value)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return f"{moment.astimezone(LONDON):%-d %b %Y, %H:%M}"


def add_filters(templates: Jinja2Templates) -> None:
    templates.env.filters.update(pounds=pounds, long_date=long_date, london_minute=london_minute)
