"""Paying an invoice online: the page behind the signed "pay this invoice" link in every
invoice email, the return from the card payment provider, and its webhooks.

The pages decide nothing: what is due, starting a payment and how it ended are the
subscriptions service's answers (``ShowPaymentDue``, ``StartCardPayment``,
``CheckCardPayment``), and the service asks the provider itself. The site checks what
only it can: the link's signature (a changed link shows nothing of anyone), the form's
CSRF token, that the provider's card page is where the service said its card pages
are (the only place the pay form may send a person, by the page's CSP), and each
webhook's ``Pay-Signature``; a webhook's body is never believed, only the payment id
it names, which the service looks up with the provider.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from typing import Any
from urllib.parse import quote, urlsplit

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from contracts.subscriptions_v1 import CheckCardPayment, ShowPaymentDue, StartCardPayment
from kernel import links
from services.web.errors import BadLink
from services.web.forms import FormProblems, sentence
from services.web.gateway import CommandFailed
from services.web.rendering import render
from services.web.security import CONTENT_SECURITY_POLICY, check_csrf, within_limit

log = logging.getLogger(__name__)

ATTEMPT = re.compile(r"[A-Za-z0-9_-]{16,64}")


def signed_number(request: Request) -> tuple[str, str]:
    """The invoice number the link names and its signature, if the link is genuine."""
    number = request.path_params["number"].upper()
    given = request.query_params.get("s", "")
    if not links.pay_link_is_genuine(request.app.state.link_secret, number, given):
        raise BadLink()
    return number, given


async def _ask(request: Request, command: Any) -> dict[str, Any]:
    """The service's answer; a number it does not know is a link that does not work."""
    try:
        return await request.app.state.gateway.ask(command)
    except CommandFailed as refused:
        if refused.error.code == "not_found":
            raise BadLink() from None
        raise


async def show(request: Request) -> Response:
    number, signature = signed_number(request)
    due = await _ask(request, ShowPaymentDue(invoice=number))
    return _due_page(request, due, signature, FormProblems())


async def start(request: Request) -> Response:
    """Start a card payment and send the person to the provider's card page."""
    number, signature = signed_number(request)
    check_csrf(request, await request.form())
    limit = request.app.state.payment_limit
    limit.record(within_limit(request, limit, "started a card payment"))
    attempt = secrets.token_urlsafe(16)
    return_url = (
        f"{request.app.state.public_url.rstrip('/')}/pay/{quote(number)}/done"
        f"?s={signature}&a={attempt}"
    )
    problems = FormProblems()
    try:
        started = await _ask(
            request,
            StartCardPayment(invoice=number, card_payment=attempt, return_url=return_url),
        )
    except CommandFailed as refused:
        problems.general.append(sentence(refused.error.message))
        due = await _ask(request, ShowPaymentDue(invoice=number))
        status = 503 if refused.error.code == "unavailable" else 409
        return _due_page(request, due, signature, problems, status=status)
    if started["already_paid"]:
        return RedirectResponse(_done_url(number, signature, started["card_payment"]), 303)
    next_url = str(started["next_url"])
    if _origin(next_url) != _origin(str(started["card_origin"])):
        log.error("the card page of %s is not at the provider's card origin", number)
        problems.general.append(
            "Card payments are not working at the moment. Try again later, or pay by bank "
            "transfer. Nothing was taken"
        )
        due = await _ask(request, ShowPaymentDue(invoice=number))
        return _due_page(request, due, signature, problems, status=503)
    return RedirectResponse(next_url, status_code=303)


async def done(request: Request) -> Response:
    """The person is back from the card page: how did it end? The return carries no
    outcome; the service asks the provider."""
    number, signature = signed_number(request)
    attempt = request.query_params.get("a", "")
    if not ATTEMPT.fullmatch(attempt):
        raise BadLink()
    try:
        checked = await _ask(request, CheckCardPayment(invoice=number, card_payment=attempt))
    except CommandFailed as refused:
        if refused.error.code != "unavailable":
            raise
        return render(
            request,
            "pages/pay/not_checked.html",
            {"number": number, "again": _done_url(number, signature, attempt)},
            status=503,
        )
    return render(
        request,
        "pages/pay/done.html",
        {
            "paid": checked,
            "number": number,
            "pay_url": f"/pay/{quote(number)}?s={signature}",
            "again": _done_url(number, signature, attempt),
        },
    )


async def webhook(request: Request) -> Response:
    """A GOV.UK Pay webhook: refused unless signed with the webhook secret; otherwise the
    payment it names is checked with the provider (and recorded if it succeeded)."""
    secret: str | None = request.app.state.pay_webhook_secret
    if not secret:
        return _plain(404, "Webhooks are not set up on this site.")
    body = await request.body()
    given = request.headers.get("pay-signature", "").strip().lower()
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.encode()):
        log.warning("a payment webhook with a wrong signature was refused")
        return _plain(
            403,
            "The Pay-Signature header does not match this message: it was not sent by the "
            "payment provider, or it was changed on the way. Nothing was done.",
        )
    try:
        message = json.loads(body)
        kind = str(message.get("resource_type", "")).lower()
        payment_id = message.get("resource_id")
    except (ValueError, AttributeError):
        return _plain(400, "The message is not a JSON object. Nothing was done.")
    if kind != "payment" or not isinstance(payment_id, str):
        return JSONResponse({"done": "nothing: not about a payment"})
    try:
        checked = await request.app.state.gateway.ask(
            CheckCardPayment(provider_payment_id=payment_id)
        )
    except ValidationError:
        return _plain(400, "The message names no payment this site could have made.")
    except CommandFailed as refused:
        if refused.error.code == "not_found":  # another service's payment: nothing to do
            return JSONResponse({"done": "nothing: not a payment of ours"})
        response = _plain(503, "The payment could not be checked now: send it again later.")
        response.headers["retry-after"] = "30"
        return response
    return JSONResponse({"done": "checked", "outcome": checked["outcome"]})


def _due_page(
    request: Request,
    due: dict[str, Any],
    signature: str,
    problems: FormProblems,
    *,
    status: int = 200,
) -> Response:
    response = render(
        request,
        "pages/pay/show.html",
        {"due": due, "signature": signature, "problems": problems},
        status=status,
    )
    if due["by_card"] and due.get("card_origin"):
        # The pay form posts here and the answer sends the browser to the card page: a
        # form's redirect is held to form-action, so the provider's origin, and it alone,
        # is added to this page's policy.
        origin = _origin(str(due["card_origin"]))
        if origin:
            response.headers["content-security-policy"] = CONTENT_SECURITY_POLICY.replace(
                "form-action 'self'", f"form-action 'self' {origin}"
            )
    return response


def _origin(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) address; None for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if not re.fullmatch(r"[A-Za-z0-9.-]+(:\d{1,5})?", parts.netloc):
        return None
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _done_url(number: str, signature: str, attempt: str) -> str:
    return f"/pay/{quote(number)}/done?s={signature}&a={attempt}"


def _plain(status: int, text: str) -> Response:
    return Response(text, status_code=status, media_type="text/plain; charset=utf-8")


routes = [
    Route("/pay/webhook", webhook, methods=["POST"], name="pay_webhook"),
    Route("/pay/{number}", show, methods=["GET"], name="pay"),
    Route("/pay/{number}", start, methods=["POST"], name="start_payment"),
    Route("/pay/{number}/done", done, name="paid"),
]
