"""Card payment providers: what subscriptions needs of one, and GOV.UK Pay's API.

A provider creates a payment for an amount and gives the address of its card page
(``next_url``), where the person pays or cancels; it says how a payment stands when
asked; it cancels a payment still in progress. Its answers are read from its API,
never from what a browser or a webhook claims.

GOV.UK Pay (docs.payments.service.gov.uk, "API reference"): ``POST /v1/payments``
with ``amount`` (pence), ``reference``, ``description`` and ``return_url`` creates a
payment (201; ``_links.next_url.href`` is the card page); ``GET /v1/payments/{id}``
answers its ``state`` (``status``, ``finished``, and ``code`` and ``message`` when it
failed); ``POST /v1/payments/{id}/cancel`` cancels one in progress (204). Every call
carries ``Authorization: Bearer <API key>``. A create carries an ``Idempotency-Key``,
so asking twice for one attempt creates one payment.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from kernel import outbound
from kernel.settings import Settings

log = logging.getLogger(__name__)


class CardPaymentsUnavailable(Exception):
    """Raised when the provider cannot be reached or answers with a server error (or too
    many requests): nothing was done, and asking again later may work."""


class CardPaymentRefused(Exception):
    """Raised when the provider refuses a request (a 4xx other than not found and too many
    requests): a key, an amount or an address it will not take."""

    def __init__(self, status: int, code: str | None, description: str) -> None:
        super().__init__(f"{status} {code or ''} {description}".strip())
        self.status = status
        self.code = code


class PaymentNotFound(CardPaymentRefused):
    """Raised when the provider knows no payment by the id asked about."""


@dataclass(frozen=True)
class PaymentState:
    """A payment as the provider says it stands."""

    payment_id: str
    status: str
    finished: bool
    amount_pence: int
    reference: str | None = None
    code: str | None = None
    message: str | None = None
    next_url: str | None = None  # the card page, while the person may still pay


class CardPaymentProvider(Protocol):
    name: str
    card_origin: str  # where its card pages are: the only place a person is sent

    async def create(
        self,
        *,
        amount_pence: int,
        reference: str,
        description: str,
        return_url: str,
        idempotency_key: str,
    ) -> PaymentState: ...

    async def status(self, payment_id: str) -> PaymentState: ...

    async def cancel(self, payment_id: str) -> bool:
        """Cancel a payment in progress; False when it can no longer be cancelled."""
        ...


class GovUkPay:
    """GOV.UK Pay's public API, one short-lived HTTP session per call (payments are few)."""

    name = "govuk_pay"

    def __init__(
        self, *, api_url: str, api_key: str, card_origin: str, timeout: float = 10.0
    ) -> None:
        self._api = api_url.rstrip("/")
        self._key = api_key
        self.card_origin = card_origin.rstrip("/")
        self._timeout = timeout  # seconds for the whole call, answer included

    async def create(
        self,
        *,
        amount_pence: int,
        reference: str,
        description: str,
        return_url: str,
        idempotency_key: str,
    ) -> PaymentState:
        body = {
            "amount": amount_pence,
            "reference": reference,
            "description": description,
            "return_url": return_url,
        }
        status, answer = await self._call(
            "POST", "/v1/payments", json=body, headers={"Idempotency-Key": idempotency_key}
        )
        if status not in (200, 201):  # 200: the payment this key already created
            raise _refusal(status, answer)
        return _state(answer)

    async def status(self, payment_id: str) -> PaymentState:
        status, answer = await self._call("GET", f"/v1/payments/{payment_id}")
        if status != 200:
            raise _refusal(status, answer)
        return _state(answer)

    async def cancel(self, payment_id: str) -> bool:
        status, answer = await self._call("POST", f"/v1/payments/{payment_id}/cancel")
        if status == 204:
            return True
        if status in (400, 409):  # P0501, P0502: it has ended, or cannot be cancelled now
            return False
        raise _refusal(status, answer)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        sent = {
            "Authorization": f"Bearer {self._key}",
            "Accept": "application/json",
            "User-Agent": "vestry",
            **(headers or {}),
        }
        try:
            # The whole call within the timeout; httpx's own bounds each step of it.
            async with asyncio.timeout(self._timeout), outbound.client(self._timeout) as client:
                response = await client.request(
                    method, f"{self._api}{path}", json=json, headers=sent
                )
        except (TimeoutError, httpx.HTTPError, httpx.InvalidURL) as error:
            raise CardPaymentsUnavailable(
                f"GOV.UK Pay unreachable: {type(error).__name__}: {error}"
            ) from None
        status, answer = response.status_code, outbound.json_object(response)
        if status == 429 or status >= 500:
            raise CardPaymentsUnavailable(f"GOV.UK Pay answered {status}: {_described(answer)}")
        return status, answer


def _described(answer: dict[str, Any]) -> str:
    return f"{answer.get('code', '')} {answer.get('description', '')}".strip() or "no detail"


def _refusal(status: int, answer: dict[str, Any]) -> CardPaymentRefused:
    kind = PaymentNotFound if status == 404 else CardPaymentRefused
    return kind(status, answer.get("code"), str(answer.get("description") or "no detail"))


def _state(answer: dict[str, Any]) -> PaymentState:
    state = answer.get("state") or {}
    next_url = ((answer.get("_links") or {}).get("next_url") or {}).get("href")
    return PaymentState(
        payment_id=str(answer["payment_id"]),
        status=str(state.get("status", "")),
        finished=bool(state.get("finished", False)),
        amount_pence=int(answer.get("amount", 0)),
        reference=answer.get("reference"),
        code=state.get("code"),
        message=state.get("message"),
        next_url=next_url,
    )


def provider_from(settings: Settings) -> CardPaymentProvider | None:
    """GOV.UK Pay when its API key is set; None (no card payments) otherwise."""
    if not settings.pay_api_key:
        return None
    return GovUkPay(
        api_url=settings.pay_api_url,
        api_key=settings.pay_api_key,
        card_origin=settings.pay_card_origin,
    )
