"""What keeps strangers honest at the door: security headers on every answer, a
CSRF token on every form, and per-client rate limits on what a stranger can repeat.

The CSRF token is the double-submit pattern, signed: a random cookie, and in each
form an HMAC of it under the site's key. A cross-site page can neither read the
cookie nor forge the HMAC, and SameSite=Strict keeps the cookie off its requests.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from http.cookies import SimpleCookie

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_COOKIE = "vestry_csrf"
CSRF_FIELD = "csrf_token"


def content_security_policy(*, styles: tuple[str, ...] = ()) -> str:
    """The site's policy; ``styles`` adds sources of style (an email's inline styles, by
    their hashes, where a page previews one)."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            " ".join(["style-src 'self'", *styles]),
            "img-src 'self' data:",
            "font-src 'self'",
            "connect-src 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "object-src 'none'",
        ]
    )


CONTENT_SECURITY_POLICY = content_security_policy()

HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    # Signed links carry their signature in the query: never hand it to another site.
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class TooManyRequests(Exception):
    """Raised when a client repeats something faster than the site allows."""

    def __init__(self, retry_after: int, what: str) -> None:
        super().__init__(what)
        self.retry_after = retry_after
        self.what = what


class CsrfFailed(Exception):
    """Raised when a form comes back without the token its page was given."""


# The largest form the site takes: a booking is well under 2 KiB.
MAX_BODY = 64 * 1024
# ... but for a file staff upload: a members CSV (the most ImportMembers takes, 10,000
# rows, is well under this). The door refuses it before reading it without a session.
UPLOADS = {"/office/members/import": 2 * 1024 * 1024}


class SecureDoor:
    """ASGI middleware: every response gets the security headers; every visitor a CSRF
    cookie; a body larger than any form of the site's is refused before it is read."""

    def __init__(self, app: ASGIApp, *, secret: str, secure_cookies: bool) -> None:
        self.app = app
        self.secret = secret
        self.secure = secure_cookies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD") and (
            problem := _body_problem(scope, UPLOADS.get(scope["path"], MAX_BODY))
        ):
            await _refuse(send, *problem)
            return
        cookie = _cookie(scope, CSRF_COOKIE)
        fresh = cookie is None or len(cookie) != 43
        if fresh:
            cookie = secrets.token_urlsafe(32)
        state = scope.setdefault("state", {})
        state["csrf_token"] = csrf_token(self.secret, cookie or "")
        state["csrf_cookie"] = cookie

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                # A response may set a stricter policy of its own (a document shown as
                # it was printed, an email previewed in a frame): it is kept, not doubled.
                own = {key for key, _ in headers}
                headers.extend(header for header in HEADERS if header[0] not in own)
                if self.secure:
                    headers.append(
                        (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
                    )
                if fresh:
                    attributes = "Path=/; HttpOnly; SameSite=Strict"
                    if self.secure:
                        attributes += "; Secure"
                    headers.append(
                        (b"set-cookie", f"{CSRF_COOKIE}={cookie}; {attributes}".encode())
                    )
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _body_problem(scope: Scope, most: int = MAX_BODY) -> tuple[int, str] | None:
    length = None
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            length = value
        elif key == b"transfer-encoding":
            return 411, "Send the form with its length."
    if length is None:
        return None  # no body
    if not length.isdigit():
        return 400, "The request's length is not a number."
    if int(length) > most:
        return 413, "That is more than any form on this site takes. Nothing was changed."
    return None


async def _refuse(send: Send, status: int, text: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), *HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": text.encode()})


def csrf_token(secret: str, cookie: str) -> str:
    return hmac.new(secret.encode(), cookie.encode(), hashlib.sha256).hexdigest()


def check_csrf(request: Request, form: FormData) -> None:
    """Raise CsrfFailed unless the form carries the token of the cookie it came with."""
    cookie = _cookie(request.scope, CSRF_COOKIE)
    given = form.get(CSRF_FIELD)
    if not cookie or not isinstance(given, str):
        raise CsrfFailed("the form came back without its security token")
    if not hmac.compare_digest(given, request.state.csrf_token):
        raise CsrfFailed("the form's security token does not match")


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed Cookie header is no cookie
                return None
            if name in jar:
                return jar[name].value
    return None


class RateLimit:
    """At most ``limit`` events per client in any ``window_s`` seconds (a sliding window).

    Kept in this process: with several replicas behind a balancer a client gets
    ``limit`` per replica it reaches, so set the limit with the replica count in mind.
    """

    def __init__(self, limit: int, window_s: float = 60.0, *, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}

    def retry_after(self, client: str) -> int:
        """Seconds until ``client`` may try again; 0 if it may now."""
        now = self._clock()
        seen = self._recent(client, now)
        if len(seen) < self.limit:
            return 0
        return max(1, int(seen[0] + self.window_s - now + 0.999))

    def record(self, client: str) -> None:
        now = self._clock()
        self._recent(client, now).append(now)
        if len(self._seen) > 10_000:  # forget clients that went quiet
            for key in [k for k, v in self._seen.items() if not v]:
                del self._seen[key]

    def _recent(self, client: str, now: float) -> deque[float]:
        seen = self._seen.setdefault(client, deque())
        while seen and seen[0] <= now - self.window_s:
            seen.popleft()
        return seen


def within_limit(request: Request, limit: RateLimit, what: str) -> str:
    """The client, if it is within ``limit``; TooManyRequests (naming ``what`` it did) if not."""
    client = client_of(request)
    wait = limit.retry_after(client)
    if wait:
        raise TooManyRequests(wait, what)
    return client


def client_of(request: Request) -> str:
    """Who is asking: the peer address, or the forwarded one from a trusted proxy (uvicorn)."""
    return request.client.host if request.client else "unknown"
