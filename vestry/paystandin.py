"""A local stand-in for GOV.UK Pay: its public API as documented, a card page a browser
is sent to, and signed webhooks. For tests and `vestry dev`, never for real money.

What it implements (docs.payments.service.gov.uk, "API reference" and "Webhooks"):

- ``POST /v1/payments``: ``amount`` (pence, 1 to 10,000,000), ``reference`` and
  ``description`` (up to 255 characters), ``return_url`` (up to 2,000) are required;
  400 ``P0101`` names a missing one, 422 ``P0102`` an invalid one, 401 a missing or
  wrong ``Authorization: Bearer`` key. 201 with the payment, ``state.status`` ``created``
  and ``_links.next_url`` (the card page). An ``Idempotency-Key`` already used answers
  200 with the payment it created (409 ``P0191`` if the body differs).
- ``GET /v1/payments/{id}``: the payment (404 ``P0200`` if none). ``state`` has ``status``
  (created, started, submitted, success, failed, cancelled, error) and ``finished``; a
  failed one ``code`` and ``message`` (``P0010`` rejected, ``P0020`` expired, ``P0030``
  cancelled by the user, ``P0040`` cancelled by the service, ``P0050`` provider error).
- ``POST /v1/payments/{id}/cancel``: 204, or 400 ``P0501`` once the payment has ended.
- ``GET /secure/{token}``: the card page (the payment becomes ``started``); its form
  pays (card ``4000000000000002`` is declined, ``4000000000000119`` gives a provider
  error, any other number passing the Luhn check succeeds) or cancels, then sends the
  browser to the payment's ``return_url`` carrying nothing about the outcome.
- Webhooks: when a payment succeeds, fails or expires, a ``POST`` of
  ``{"webhook_message_id", "created_date", "resource_id", "api_version": 1,
  "resource_type": "payment", "event_type": "card_payment_succeeded" | ..., "resource": {...}}``
  to the webhook URL, with ``Pay-Signature``: the lower-case hex HMAC-SHA256 of the
  body under the signing secret. Tried again (three times in all) while the answer is
  not 2xx.

Run alone: ``python -m vestry.paystandin --port 8090 --api-key KEY --webhook-url URL
--webhook-secret SECRET``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import html
import json
import logging
import secrets
import socket
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from kernel import outbound

log = logging.getLogger(__name__)

MAX_AMOUNT = 10_000_000
DECLINED_CARD = "4000000000000002"
ERROR_CARD = "4000000000000119"
TEST_CARD = "4444333322221111"

FAILURES = {
    "P0010": "Payment method rejected",
    "P0020": "Payment expired",
    "P0030": "Payment was cancelled by the user",
    "P0040": "Payment was cancelled by the service",
    "P0050": "Payment provider returned an error",
}
EVENT_OF_STATUS = {
    "success": "card_payment_succeeded",
    "failed": "card_payment_failed",
    "error": "card_payment_failed",
}


def sign(secret: str, body: bytes) -> str:
    """``Pay-Signature``: the lower-case hex HMAC-SHA256 of ``body`` under ``secret``."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def luhn_ok(number: str) -> bool:
    digits = [int(d) for d in number if d.isdigit()]
    if len(digits) < 12 or len(digits) != len(number):
        return False
    total = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2:
            digit *= 2
            digit -= 9 if digit > 9 else 0
        total += digit
    return total % 10 == 0


@dataclass
class StandInPayment:
    payment_id: str
    token: str
    amount: int
    reference: str
    description: str
    return_url: str
    created_date: str
    body: dict[str, Any]
    status: str = "created"
    code: str | None = None
    card_last4: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("success", "failed", "cancelled", "error")


@dataclass
class PayStandIn:
    """GOV.UK Pay on a local port. ``auto_webhooks`` sends each payment's webhook as it
    ends; tests may turn that off and send them themselves (``send_webhook``)."""

    api_key: str
    webhook_url: str | None = None
    webhook_secret: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    auto_webhooks: bool = True
    payments: dict[str, StandInPayment] = field(default_factory=dict)
    deliveries: list[tuple[str, str, int]] = field(default_factory=list)  # id, event, status
    requests: list[tuple[str, str]] = field(default_factory=list)  # method, path
    _by_token: dict[str, str] = field(default_factory=dict)
    _by_key: dict[str, str] = field(default_factory=dict)
    _server: uvicorn.Server | None = None
    _serving: asyncio.Task[None] | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # Running

    def app(self) -> Starlette:
        app = Starlette(
            routes=[
                Route("/v1/payments", self._create, methods=["POST"]),
                Route("/v1/payments/{payment_id}", self._get, methods=["GET"]),
                Route("/v1/payments/{payment_id}/cancel", self._cancel, methods=["POST"]),
                Route("/secure/{token}", self._card_page, methods=["GET"]),
                Route("/secure/{token}", self._card_form, methods=["POST"]),
            ]
        )
        app.router.redirect_slashes = False  # a path with a slash added is not found
        return app

    async def start(self) -> None:
        """Serve on ``host``:``port`` (0: a free port, then ``port`` says which) in this event
        loop; raises OSError if the address cannot be had."""
        listening = await _listening(self.host, self.port)
        self.port = listening.getsockname()[1]
        config = uvicorn.Config(
            self.app(),
            host=self.host,
            port=self.port,
            log_level="warning",
            lifespan="off",
            access_log=False,
            # Idle connections outlive a client's (httpx keeps one 5 s), so a client never
            # reuses one the stand-in is closing; one still answering gets a minute at stop.
            timeout_keep_alive=75,
            timeout_graceful_shutdown=60,
        )
        self._server = uvicorn.Server(config)
        self._serving = asyncio.create_task(self._server.serve(sockets=[listening]))
        while not self._server.started:
            if self._serving.done():
                self._serving.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            await self._serving
            self._server = self._serving = None

    # The API

    def _authorised(self, request: Request) -> bool:
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode())

    async def _create(self, request: Request) -> Response:
        self.requests.append(("POST", request.url.path))
        if not self._authorised(request):
            return _error(401, "P0920", "Unauthorised: give your API key as a Bearer token")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "P0197", "Unable to parse JSON")
        if not isinstance(body, dict):
            return _error(400, "P0197", "Unable to parse JSON")
        for name in ("amount", "reference", "description", "return_url"):
            if body.get(name) in (None, ""):
                return _error(400, "P0101", f"Missing mandatory attribute: {name}", name)
        amount = body["amount"]
        if not isinstance(amount, int) or isinstance(amount, bool) or not 1 <= amount <= MAX_AMOUNT:
            return _error(
                422,
                "P0102",
                f"Invalid attribute value: amount. Must be less than or equal to {MAX_AMOUNT}",
                "amount",
            )
        for name, most in (("reference", 255), ("description", 255), ("return_url", 2000)):
            if not isinstance(body[name], str) or len(body[name]) > most:
                return _error(
                    422, "P0102", f"Invalid attribute value: {name}. Must be at most {most}", name
                )
        if not body["return_url"].startswith(("http://", "https://")):
            return _error(422, "P0102", "Invalid attribute value: return_url. Must be a URL")
        key = request.headers.get("Idempotency-Key")
        if key and key in self._by_key:
            earlier = self.payments[self._by_key[key]]
            if earlier.body != body:
                return _error(409, "P0191", "The Idempotency-Key has been used already")
            return _json(self._resource(earlier, links=True), status=200)
        payment = StandInPayment(
            payment_id="".join(
                secrets.choice(string.ascii_lowercase + string.digits) for _ in range(26)
            ),
            token=secrets.token_hex(16),
            amount=amount,
            reference=body["reference"],
            description=body["description"],
            return_url=body["return_url"],
            created_date=_now(),
            body=body,
        )
        self.payments[payment.payment_id] = payment
        self._by_token[payment.token] = payment.payment_id
        if key:
            self._by_key[key] = payment.payment_id
        return _json(self._resource(payment, links=True), status=201)

    async def _get(self, request: Request) -> Response:
        self.requests.append(("GET", request.url.path))
        if not self._authorised(request):
            return _error(401, "P0920", "Unauthorised: give your API key as a Bearer token")
        payment = self.payments.get(request.path_params["payment_id"])
        if payment is None:
            return _error(404, "P0200", "Not found")
        return _json(self._resource(payment, links=True))

    async def _cancel(self, request: Request) -> Response:
        self.requests.append(("POST", request.url.path))
        if not self._authorised(request):
            return _error(401, "P0920", "Unauthorised: give your API key as a Bearer token")
        payment = self.payments.get(request.path_params["payment_id"])
        if payment is None:
            return _error(404, "P0500", "Not found")
        if payment.finished:
            return _error(400, "P0501", "Cancellation of payment failed")
        self._end(payment, "cancelled", "P0040")
        return Response(status_code=204)

    def _resource(self, payment: StandInPayment, *, links: bool = False) -> dict[str, Any]:
        state: dict[str, Any] = {"status": payment.status, "finished": payment.finished}
        if payment.code:
            state |= {"code": payment.code, "message": FAILURES[payment.code]}
        resource: dict[str, Any] = {
            "amount": payment.amount,
            "description": payment.description,
            "reference": payment.reference,
            "language": "en",
            "state": state,
            "payment_id": payment.payment_id,
            "payment_provider": "sandbox",
            "created_date": payment.created_date,
            "refund_summary": {
                "status": "available" if payment.status == "success" else "pending",
                "amount_available": payment.amount if payment.status == "success" else 0,
                "amount_submitted": 0,
            },
            "settlement_summary": {},
            "delayed_capture": False,
            "moto": False,
            "return_url": payment.return_url,
            "authorisation_mode": "web",
        }
        if payment.card_last4:
            resource["card_details"] = {
                "last_digits_card_number": payment.card_last4,
                "card_brand": "Visa",
                "card_type": "debit",
            }
        if links:
            api = f"{self.url}/v1/payments/{payment.payment_id}"
            found: dict[str, Any] = {
                "self": {"href": api, "method": "GET"},
                "events": {"href": f"{api}/events", "method": "GET"},
                "refunds": {"href": f"{api}/refunds", "method": "GET"},
            }
            if payment.status in ("created", "started"):
                found["next_url"] = {"href": self.card_url(payment), "method": "GET"}
                found["next_url_post"] = {
                    "type": "application/x-www-form-urlencoded",
                    "params": {"chargeTokenId": payment.token},
                    "href": f"{self.url}/secure",
                    "method": "POST",
                }
            if not payment.finished:
                found["cancel"] = {"href": f"{api}/cancel", "method": "POST"}
            resource["_links"] = found
        return resource

    def card_url(self, payment: StandInPayment) -> str:
        return f"{self.url}/secure/{payment.token}"

    # The card page

    async def _card_page(self, request: Request) -> Response:
        payment = self._payment_of_token(request.path_params["token"])
        if payment is None or payment.finished:
            return _page(
                "This payment has ended", "<p>Go back to the service to try again.</p>", 404
            )
        payment.status = "started"
        return self._card_form_page(payment)

    def _card_form_page(self, payment: StandInPayment, problem: str = "") -> Response:
        pounds = f"£{payment.amount // 100:,}.{payment.amount % 100:02d}"
        error = (
            f'<p class="error" id="card-error" role="alert">{html.escape(problem)}</p>'
            if problem
            else ""
        )
        body = f"""
<p>Payment stand-in for local testing: no money moves.</p>
<p>{html.escape(payment.description)}</p>
<p>Total amount: <strong>{pounds}</strong></p>
<form method="post">
  {error}
  <label for="card-number">Card number</label>
  <input id="card-number" name="card_number" inputmode="numeric" autocomplete="cc-number"
         value="{TEST_CARD}"{' aria-describedby="card-error"' if problem else ""}>
  <button type="submit" name="action" value="pay">Confirm payment</button>
  <button type="submit" name="action" value="cancel">Cancel payment</button>
</form>"""
        return _page("Enter card details", body, 400 if problem else 200)

    async def _card_form(self, request: Request) -> Response:
        payment = self._payment_of_token(request.path_params["token"])
        if payment is None or payment.finished:
            return _page(
                "This payment has ended", "<p>Go back to the service to try again.</p>", 404
            )
        form = await request.form()
        if form.get("action") == "cancel":
            self.pay_cancelled_by_user(payment.payment_id)
        else:
            card = str(form.get("card_number", "")).replace(" ", "")
            if not luhn_ok(card):
                return self._card_form_page(payment, "Enter a valid card number")
            self.pay_with_card(payment.payment_id, card)
        return RedirectResponse(payment.return_url, status_code=303)

    def _payment_of_token(self, token: str) -> StandInPayment | None:
        payment_id = self._by_token.get(token)
        return self.payments.get(payment_id) if payment_id else None

    # What a person (or time) does to a payment, also callable by tests

    def pay_with_card(self, payment_id: str, card: str = TEST_CARD) -> None:
        """The person confirms the payment with ``card``: success, or as the card says."""
        payment = self.payments[payment_id]
        payment.card_last4 = card[-4:]
        if card == DECLINED_CARD:
            self._end(payment, "failed", "P0010")
        elif card == ERROR_CARD:
            self._end(payment, "error", "P0050")
        else:
            self._end(payment, "success")

    def pay_cancelled_by_user(self, payment_id: str) -> None:
        self._end(self.payments[payment_id], "failed", "P0030")

    def expire(self, payment_id: str) -> None:
        """Ninety minutes pass without the person finishing."""
        self._end(self.payments[payment_id], "failed", "P0020", event="card_payment_expired")

    def _end(
        self,
        payment: StandInPayment,
        status: str,
        code: str | None = None,
        *,
        event: str | None = None,
    ) -> None:
        if payment.finished:
            return
        payment.status, payment.code = status, code
        event = event or EVENT_OF_STATUS.get(status)
        if event and self.auto_webhooks and self.webhook_url:
            task = asyncio.get_running_loop().create_task(self._deliver(payment, event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # Webhooks

    def webhook_body(self, payment_id: str, event: str | None = None) -> bytes:
        payment = self.payments[payment_id]
        message = {
            "webhook_message_id": secrets.token_hex(13),
            "created_date": _now(),
            "resource_id": payment.payment_id,
            "api_version": 1,
            "resource_type": "payment",
            "event_type": event or EVENT_OF_STATUS.get(payment.status, "card_payment_failed"),
            "resource": self._resource(payment),
        }
        return json.dumps(message).encode()

    async def send_webhook(
        self,
        payment_id: str,
        event: str | None = None,
        *,
        body: bytes | None = None,
        signature: str | None = None,
    ) -> int:
        """POST one webhook message about ``payment_id`` now, signed (or as given); the status."""
        assert self.webhook_url, "the stand-in has no webhook URL"
        body = body if body is not None else self.webhook_body(payment_id, event)
        headers = {"Content-Type": "application/json"}
        signature = signature if signature is not None else sign(self.webhook_secret or "", body)
        headers["Pay-Signature"] = signature
        # Within 10 s in all; redirects followed, as they always were here.
        async with (
            asyncio.timeout(10),
            outbound.client(10) as client,
        ):
            response = await client.post(self.webhook_url, content=body, headers=headers)
        status = response.status_code
        self.deliveries.append((payment_id, event or "", status))
        return status

    async def _deliver(self, payment: StandInPayment, event: str) -> None:
        for attempt in range(3):
            try:
                status = await self.send_webhook(payment.payment_id, event)
            except (TimeoutError, httpx.HTTPError, httpx.InvalidURL) as error:
                log.info("webhook for %s not delivered: %s", payment.payment_id, error)
                status = 0
            if 200 <= status < 300:
                return
            await asyncio.sleep(0.2 * (attempt + 1))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _json(body: dict[str, Any], status: int = 200) -> Response:
    """``body`` as JSON, written as the stand-in always has: ``json.dumps``'s spacing, ASCII,
    and ``Content-Type: application/json; charset=utf-8``."""
    return Response(json.dumps(body), status, media_type="application/json; charset=utf-8")


def _error(status: int, code: str, description: str, field: str | None = None) -> Response:
    body: dict[str, Any] = {"code": code, "description": description}
    if field:
        body["field"] = field
    return _json(body, status=status)


def _page(title: str, body: str, status: int = 200) -> Response:
    page = f"""<!DOCTYPE html>
<html lang="en-GB"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} – card payment stand-in</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem}}
label,input,button{{display:block;margin:.5rem 0;font-size:1.1rem}}.error{{color:#b00}}</style>
</head><body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"""
    return HTMLResponse(page, status_code=status)


async def _listening(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (0: a free port) for uvicorn to serve on.
    Bound here so that a taken address raises OSError, where uvicorn would exit the process."""
    loop = asyncio.get_running_loop()
    family, *_, address = (
        await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    )[0]
    return socket.create_server(address, family=family)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local stand-in for GOV.UK Pay.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--webhook-url")
    parser.add_argument("--webhook-secret")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s paystandin %(message)s")
    stand_in = PayStandIn(
        api_key=args.api_key,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        host=args.host,
        port=args.port,
    )

    async def serve() -> None:
        await stand_in.start()
        log.info("GOV.UK Pay stand-in on %s", stand_in.url)
        try:
            await asyncio.Event().wait()
        finally:
            await stand_in.stop()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
