"""SMS providers: a capture sink for development and tests, and GOV.UK Notify.

A provider takes an E.164 number and a rendered text and answers the
provider's id for the message, or raises TransientFailure or PermanentFailure.
``prepared_text`` is the text as a provider will send it, which is also what its
parts are counted from when a message is planned.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt

from kernel import outbound
from kernel.settings import Settings
from services.notifications.failures import PermanentFailure, TransientFailure
from services.notifications.segments import SmsTooLong, count_segments, fit_sms, notify_normalise
from services.notifications.templates import TemplateProblem, Templates

log = logging.getLogger(__name__)

# What a booking SMS may shorten to fit the segment limit: the free text organisers
# type, in this order. A time or a reference is never cut.
SHORTENED = ("event_title", "where")


def prepared_text(provider: str, text: str) -> str:
    """``text`` as the provider named ``provider`` (``settings.sms_provider``) sends it.

    GOV.UK Notify applies its character replacements to every SMS (curly quotes,
    dashes, ellipses and odd spaces become GSM-7 ones), so for ``notify`` they are
    applied here first, and what Vestry counts and sends is what Notify sends. The
    capture sink keeps the text exactly as rendered and it is counted as written:
    the sink stands in for no particular gateway (it is what development and the
    tests use), and a gateway that replaces nothing sends and counts it that way.
    """
    return notify_normalise(text) if provider == NotifyGateway.name else text


def segment_limit_check(
    settings: Settings, templates: Templates
) -> Callable[[str, dict[str, Any]], dict[str, Any] | None]:
    """The check a transactional SMS passes before it is planned (``domain.SmsFit``).

    Given a template and its context it answers the context to plan the SMS with:
    the same one when the text, rendered as the sender renders it and prepared for
    ``settings.sms_provider``, fits ``settings.sms_segment_limit``; otherwise one
    with the event's title, then its place, cut short (ending ``...``) just enough
    to fit. A booker expects the SMS, its time and reference whole, rather than
    the full title, which the email carries; it is never sent over the limit. If
    even that cannot fit (an operator's template too long by itself) it answers
    None, the SMS is not planned, and a warning says why. A template that cannot
    render is planned as it is, and the sender fails it with the reason, as before.
    """
    prepare = partial(prepared_text, settings.sms_provider)

    def check(template: str, context: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return fit_sms(
                partial(templates.sms, template),
                context,
                limit=settings.sms_segment_limit,
                shorten=SHORTENED,
                prepare=prepare,
            )
        except TemplateProblem:
            return context
        except SmsTooLong as too_long:
            log.warning("%s SMS not planned: %s", template, too_long)
            return None

    return check


class SmsProvider(Protocol):
    name: str

    async def send(self, to: str, text: str, *, reference: str) -> str:
        """Hand the message to the provider; returns the provider's id for it."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class CapturedSms:
    id: str
    to: str
    text: str
    reference: str
    encoding: str
    segments: int
    at: str


class CaptureSink:
    """Writes each SMS as a JSON file under ``directory`` (``vestry sms ls`` reads them).

    The text is kept as rendered and counted as written, with no provider's
    replacements (see ``prepared_text``).
    """

    name = "capture"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    async def send(self, to: str, text: str, *, reference: str) -> str:
        counted = count_segments(text)
        captured = CapturedSms(
            id=str(uuid.uuid4()),
            to=to,
            text=text,
            reference=reference,
            encoding=counted.encoding,
            segments=counted.segments,
            at=datetime.now(UTC).isoformat(),
        )
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        path = self.directory / f"{stamp}-{captured.id[:8]}.json"
        # Written by a worker thread: a file costs the disk a moment the loop need not wait.
        await asyncio.to_thread(_write_whole, path, json.dumps(asdict(captured)).encode())
        return captured.id

    async def close(self) -> None:
        pass


def _write_whole(path: Path, data: bytes) -> None:
    """Write ``path`` so that readers never see half of it: in full under another name,
    then renamed."""
    partial = path.with_suffix(".part")
    with open(partial, "wb") as file:
        file.write(data)
    os.replace(partial, path)


def read_captured(directory: Path) -> list[CapturedSms]:
    """Every captured SMS, oldest first."""
    if not directory.exists():
        return []
    return [
        CapturedSms(**json.loads(path.read_text())) for path in sorted(directory.glob("*.json"))
    ]


class NotifyGateway:
    """GOV.UK Notify's v2 API: ``POST /v2/notifications/sms`` with a JWT bearer token.

    The API key is ``<key name>-<service id>-<secret>``; each request carries an
    HS256 JWT with ``iss`` (the service id) and ``iat`` (now), signed with the
    secret. Vestry renders the text itself and passes it as the ``body``
    personalisation of a Notify template whose content is ``((body))``, with
    Notify's character replacements already applied (``prepared_text``).
    """

    name = "notify"

    def __init__(
        self, *, api_key: str, template_id: str, base_url: str, timeout: float = 10.0
    ) -> None:
        if len(api_key) < 74:
            raise ValueError("a Notify API key is <key name>-<service id>-<secret key>")
        self._service_id = api_key[-73:-37]
        self._secret = api_key[-36:]
        self._template_id = template_id
        self._url = f"{base_url.rstrip('/')}/v2/notifications/sms"
        self._timeout = timeout  # seconds for the whole request, answer included
        self._client: httpx.AsyncClient | None = None

    def token(self) -> str:
        return jwt.encode(
            {"iss": self._service_id, "iat": int(time.time())},
            self._secret,
            algorithm="HS256",
            headers={"typ": "JWT", "alg": "HS256"},
        )

    async def send(self, to: str, text: str, *, reference: str) -> str:
        if self._client is None:
            self._client = outbound.client(self._timeout)
        body = {
            "phone_number": to,
            "template_id": self._template_id,
            "personalisation": {"body": prepared_text(self.name, text)},
            "reference": reference,
        }
        headers = {"Authorization": f"Bearer {self.token()}", "User-Agent": "vestry"}
        try:
            # The whole exchange within the timeout; httpx's own bounds each step of it.
            async with asyncio.timeout(self._timeout):
                response = await self._client.post(self._url, json=body, headers=headers)
        except (TimeoutError, httpx.HTTPError, httpx.InvalidURL) as error:
            raise TransientFailure(f"Notify unreachable: {type(error).__name__}: {error}") from None
        status, answer = response.status_code, outbound.json_object(response)
        if status == 201:
            return str(answer["id"])
        problem = _first_error(answer)
        if status == 400:  # ValidationError or BadRequestError: this message cannot go
            raise PermanentFailure(f"Notify {status}: {problem}")
        # 403 (a key or clock problem), 429 (rate or daily limit), 5xx: an operator or
        # time can fix these, so the message is tried again.
        raise TransientFailure(f"Notify {status}: {problem}")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _first_error(answer: dict[str, Any]) -> str:
    errors = answer.get("errors") or [{}]
    first = errors[0]
    return f"{first.get('error', 'error')}: {first.get('message', answer or 'no detail')}"


def provider_from(settings: Settings) -> SmsProvider:
    if settings.sms_provider == "notify":
        if not settings.notify_api_key or not settings.notify_sms_template_id:
            raise ValueError(
                "VESTRY_SMS_PROVIDER=notify needs VESTRY_NOTIFY_API_KEY and "
                "VESTRY_NOTIFY_SMS_TEMPLATE_ID"
            )
        return NotifyGateway(
            api_key=settings.notify_api_key,
            template_id=settings.notify_sms_template_id,
            base_url=settings.notify_base_url,
        )
    return CaptureSink(settings.data_dir / "sms")
