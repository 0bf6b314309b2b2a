"""What goes wrong at the door, as pages a person understands."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from services.web.gateway import ServiceUnavailable
from services.web.rendering import render
from services.web.security import CsrfFailed, TooManyRequests

log = logging.getLogger(__name__)


class NotFound(Exception):
    """Raised by a page when what the address names does not exist (or is not public)."""


class BadLink(Exception):
    """Raised when a signed link is incomplete or has been changed."""


def _page(request: Request, status: int, title: str, message: str, **extra: object) -> Response:
    response = render(
        request, "errors/error.html", {"title": title, "message": message, **extra}, status=status
    )
    return response


async def not_found(request: Request, error: Exception) -> Response:
    return _page(request, 404, "Page not found", str(error) or "There is no page at this address")


async def http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code == 404:
        return await not_found(request, NotFound())
    if error.status_code == 405:
        return _page(request, 405, "That did not work", "This page cannot be used that way.")
    return _page(request, error.status_code, "That did not work", str(error.detail))


async def csrf_failed(request: Request, error: Exception) -> Response:
    return _page(
        request,
        403,
        "Your form could not be sent",
        "The form had expired or did not come from this site. Go back, reload the page "
        "and try again. Nothing was changed.",
    )


async def too_many(request: Request, error: Exception) -> Response:
    assert isinstance(error, TooManyRequests)
    response = _page(
        request,
        429,
        "Too many attempts",
        f"You have {error.what} too many times in a short while. Wait "
        f"{error.retry_after} seconds and try again. Nothing was changed.",
    )
    response.headers["retry-after"] = str(error.retry_after)
    return response


async def bad_link(request: Request, error: Exception) -> Response:
    return _page(
        request,
        400,
        "This link does not work",
        "The link is incomplete or has been changed. Use the link in your email as it "
        "came, or find your booking with its reference and your email address.",
        find_booking=True,
    )


async def unavailable(request: Request, error: Exception) -> Response:
    log.warning("a service did not answer: %s", error)
    response = _page(
        request,
        503,
        "Sorry, there is a problem with the service",
        "Try again in a few minutes. Nothing was changed.",
    )
    response.headers["retry-after"] = "30"
    return response


async def internal(request: Request, error: Exception) -> Response:
    log.exception("page %s failed", request.url.path)
    return _page(
        request,
        500,
        "Sorry, there is a problem with the service",
        "Try again later. Nothing was changed.",
    )


HANDLERS = {
    NotFound: not_found,
    HTTPException: http_error,
    CsrfFailed: csrf_failed,
    TooManyRequests: too_many,
    BadLink: bad_link,
    ServiceUnavailable: unavailable,
    Exception: internal,
}
