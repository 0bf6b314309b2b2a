"""The page behind a broadcast's unsubscribe link.

GET only asks (mail scanners fetch links and must not unsubscribe anyone); POST
unsubscribes: the page's button, or a mail client's one-click request (RFC 8058,
body ``List-Unsubscribe=One-Click``), which carries no CSRF token: the signed
link is what authorises it, and doing it twice is harmless.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contracts.notifications_v1 import TOPICS, Unsubscribe
from kernel import links
from services.web.errors import BadLink
from services.web.gateway import CommandFailed
from services.web.rendering import render


async def unsubscribe(request: Request) -> Response:
    contact_id = request.query_params.get("c", "")
    topic = request.query_params.get("t", "")
    if topic not in TOPICS or not links.unsubscribe_link_is_genuine(
        request.app.state.link_secret_unsubscribe,
        contact_id,
        topic,
        request.query_params.get("s", ""),
    ):
        raise BadLink()
    if request.method == "POST":
        try:
            await request.app.state.gateway.ask(Unsubscribe(contact=contact_id, topics=[topic]))
        except CommandFailed as refused:
            # Nobody by that id: a link from before the ids were keyed, or for a person
            # since forgotten. Say the link does not work rather than claim a change.
            if refused.error.code == "not_found":
                raise BadLink() from None
            raise
        return render(request, "pages/unsubscribe/done.html", {"topic": TOPICS[topic]})
    return render(request, "pages/unsubscribe/ask.html", {"topic": TOPICS[topic]})


routes = [Route("/unsubscribe", unsubscribe, methods=["GET", "POST"], name="unsubscribe")]
