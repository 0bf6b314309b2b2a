"""The page behind a broadcast's unsubscribe link.

GET only asks (mail scanners fetch links, and must not unsubscribe anyone);
POST unsubscribes: the button on that page, or the mail client's one-click
request (RFC 8058, body ``List-Unsubscribe=One-Click``). The link is signed,
so nobody can take someone else off a topic; doing it twice is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from html import escape

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kernel.runtime import Service
from kernel.settings import Settings
from services.notifications import store
from services.notifications.domain import TOPICS, unsubscribe_link_is_genuine

log = logging.getLogger(__name__)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 36em; margin: 3em auto">
<h1>{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=PAGE.format(title=escape(title), body=body), status=status, content_type="text/html"
    )


def unsubscribe_app(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> web.Application:
    async def link(request: web.Request) -> tuple[str, str] | web.Response:
        contact_id, topic = request.query.get("c", ""), request.query.get("t", "")
        signature = request.query.get("s", "")
        if topic not in TOPICS or not unsubscribe_link_is_genuine(
            settings.unsubscribe_secret, contact_id, topic, signature
        ):
            return _page(
                "This link does not work",
                "<p>The unsubscribe link is incomplete or has been changed. Use the link in "
                f"the email as it came, or reply to it and {escape(settings.partnership_name)} "
                "will take you off the list.</p>",
                status=400,
            )
        return contact_id, topic

    async def ask(request: web.Request) -> web.Response:
        checked = await link(request)
        if isinstance(checked, web.Response):
            return checked
        topic = TOPICS[checked[1]]
        return _page(
            f"Stop receiving {topic}?",
            f"<p>You will no longer receive {escape(topic)} from "
            f"{escape(settings.partnership_name)} by email or SMS.</p>"
            '<form method="post"><button type="submit">Unsubscribe</button></form>',
        )

    async def unsubscribe(request: web.Request) -> web.Response:
        checked = await link(request)
        if isinstance(checked, web.Response):
            return checked
        contact_id, topic = checked
        async with sessions() as session, session.begin():
            known = await store.find_person(session, contact_id)
            if known is not None and known.contact is not None:
                await store.unsubscribe(session, known.contact, [topic])
        log.info("contact %s unsubscribed from %s through the link", contact_id, topic)
        return _page(
            "You are unsubscribed",
            f"<p>You will no longer receive {escape(TOPICS[topic])} from "
            f"{escape(settings.partnership_name)}.</p>",
        )

    app = web.Application()
    app.router.add_get("/unsubscribe", ask)
    app.router.add_post("/unsubscribe", unsubscribe)
    return app


async def serve_unsubscribe_page(service: Service) -> None:
    """Answer unsubscribe links on ``unsubscribe_host:unsubscribe_port`` while the service runs."""
    settings = service.settings
    runner = web.AppRunner(unsubscribe_app(service.sessions, settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.unsubscribe_host, settings.unsubscribe_port)
    await site.start()
    log.info("unsubscribe page on %s:%s", settings.unsubscribe_host, settings.unsubscribe_port)
    try:
        await asyncio.Event().wait()
    finally:
        await asyncio.shield(runner.cleanup())
