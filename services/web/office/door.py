"""Who may pass: every /office/ request is decided here, on the server.

``StaffDoor`` wraps the whole /office/ mount: it reads the session cookie, asks the
store who holds it, and without a live session sends a GET to sign in and refuses
anything else with 403, before any page runs. ``page`` builds each route: the roles
it names are checked on every request, whatever its method, fields or headers, and a
refusal is a 403 page. Every command a page sends goes through ``ask``, which puts
the staff member (and where they are) on the envelope.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import quote, urlsplit

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts import Envelope
from contracts import Message as Command
from kernel.commands import CommandFailed, ServiceUnavailable, request_raw
from services.web.office.accounts import SESSION_COOKIE, StaffMember
from services.web.office.commands import ROLES
from services.web.rendering import render
from services.web.security import CsrfFailed, TooManyRequests, _cookie, client_of

SIGN_IN = "/office/sign-in"
Endpoint = Callable[[Request], Awaitable[Response]]


class StaffDoor:
    """ASGI middleware for /office/: a live session, or sign in (GET) or 403 (anything else)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        office = scope["app"].state.office
        token = _cookie(scope, SESSION_COOKIE)
        staff = await office.accounts.identify(token)
        state = scope.setdefault("state", {})
        state["staff"] = staff
        clear = token is not None and staff is None

        async def send_private(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"cache-control", b"no-store"))
                if clear and not any(
                    k == b"set-cookie" and SESSION_COOKIE.encode() in v for k, v in headers
                ):
                    headers.append((b"set-cookie", office.cookie("", max_age=0).encode()))
                message["headers"] = headers
            await send(message)

        if staff is None and scope["path"] != SIGN_IN:
            request = Request(scope, receive)
            if scope["method"] in ("GET", "HEAD"):
                wanted = scope["path"] + (
                    "?" + scope["query_string"].decode("latin-1") if scope["query_string"] else ""
                )
                response: Response = RedirectResponse(
                    f"{SIGN_IN}?next={quote(wanted, safe='')}", status_code=303
                )
            else:
                response = refusal(
                    request,
                    403,
                    "Sign in to do that",
                    "You are not signed in, or your session has ended. Sign in and try again. "
                    "Nothing was changed.",
                )
            await response(scope, receive, send_private)
            return
        await self.app(scope, receive, send_private)


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a back-office address on this site, never elsewhere."""
    if not value or not value.startswith("/office/") or "\\" in value or value.startswith("//"):
        return "/office/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/office/"
    return value


def page(
    path: str,
    endpoint: Endpoint,
    *,
    roles: Iterable[str] | None,
    methods: Iterable[str] = ("GET",),
    name: str | None = None,
) -> Route:
    """A back-office route: open to holders of any of ``roles`` (every signed-in member of
    staff when None), everyone else refused 403; a page's usual failures as office pages."""
    needed = frozenset(roles) if roles is not None else None
    if needed is not None:
        assert needed <= set(ROLES), f"unknown roles {needed - set(ROLES)}"

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        staff: StaffMember | None = request.state.staff
        if needed is not None and (staff is None or not (staff.roles & needed)):
            return refusal(
                request,
                403,
                "You do not have access to this page",
                "Your roles do not include "
                + " or ".join(sorted(needed))
                + ". Ask an administrator if you need it. Nothing was changed.",
            )
        try:
            return await endpoint(request)
        except CsrfFailed:
            return refusal(
                request,
                403,
                "Your form could not be sent",
                "The form had expired or did not come from this site. Go back, reload the "
                "page and try again. Nothing was changed.",
            )
        except TooManyRequests as limited:
            response = refusal(
                request,
                429,
                "Too many attempts",
                f"You have {limited.what} too many times in a short while. Wait "
                f"{limited.retry_after} seconds and try again.",
            )
            response.headers["retry-after"] = str(limited.retry_after)
            return response
        except ServiceUnavailable:
            response = refusal(
                request,
                503,
                "Sorry, there is a problem with the service",
                "A service did not answer. Try again in a few minutes. Nothing was changed.",
            )
            response.headers["retry-after"] = "30"
            return response

    guarded.roles = needed  # type: ignore[attr-defined]
    return Route(path, guarded, methods=list(methods), name=name)


def refusal(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return office_render(
        request, "office/error.html", {"title": title, "message": message}, status=status
    )


def office_render(
    request: Request, name: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> HTMLResponse:
    """A back-office page, told who is signed in (for the navigation)."""
    staff: StaffMember | None = getattr(request.state, "staff", None)
    return render(request, name, {"staff": staff, **(context or {})}, status=status)


def actor_address(request: Request) -> str:
    return client_of(request)


async def ask(request: Request, command: Command, *, id: str | None = None) -> dict[str, Any]:
    """Send ``command`` as the signed-in staff member; the reply's data, or CommandFailed.

    ``id``, the envelope id, makes a resent form the same command: the service answers
    it as it answered the first, and acts once."""
    office = request.app.state.office
    staff: StaffMember = request.state.staff
    envelope = Envelope.wrap(command, id=id, actor=staff.actor(actor_address(request)))
    reply = await request_raw(
        request.app.state.nats, command.SUBJECT, envelope.to_bytes(), timeout=office.timeout
    )
    if not reply.ok:
        assert reply.error is not None
        raise CommandFailed(reply.error)
    return reply.data or {}


async def ask_about(request: Request, make: Callable[[], Command]) -> dict[str, Any] | None:
    """What the owning service shows of the thing a page's address names (an event, a
    member, an invoice); None when there is no such thing: an address no command can be
    made from, or one the service does not know."""
    try:
        return await ask(request, make())
    except ValidationError:
        return None
    except CommandFailed as refused:
        if refused.error.code not in ("not_found", "invalid"):
            raise
        return None


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)
