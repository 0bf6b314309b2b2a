"""SMS providers: a capture sink for development and tests, and GOV.UK Notify.

A provider takes an E.164 number and a rendered text and answers the
provider's id for the message, or raises TransientFailure or PermanentFailure.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import jwt

from kernel.settings import Settings
from services.notifications.failures import PermanentFailure, TransientFailure
from services.notifications.segments import count_segments


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
    """Writes each SMS as a JSON file under ``directory`` (``vestry sms ls`` reads them)."""

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
        partial = path.with_suffix(".part")
        partial.write_text(json.dumps(asdict(captured)))
        partial.rename(path)  # readers never see half a message
        return captured.id

    async def close(self) -> None:
        pass


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
    personalisation of a Notify template whose content is ``((body))``.
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
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def token(self) -> str:
        return jwt.encode(
            {"iss": self._service_id, "iat": int(time.time())},
            self._secret,
            algorithm="HS256",
            headers={"typ": "JWT", "alg": "HS256"},
        )

    async def send(self, to: str, text: str, *, reference: str) -> str:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        body = {
            "phone_number": to,
            "template_id": self._template_id,
            "personalisation": {"body": text},
            "reference": reference,
        }
        headers = {"Authorization": f"Bearer {self.token()}", "User-Agent": "vestry"}
        try:
            async with self._session.post(self._url, json=body, headers=headers) as response:
                status = response.status
                answer = await _json(response)
        except (TimeoutError, aiohttp.ClientError) as error:
            raise TransientFailure(f"Notify unreachable: {type(error).__name__}: {error}") from None
        if status == 201:
            return str(answer["id"])
        problem = _first_error(answer)
        if status == 400:  # ValidationError or BadRequestError: this message cannot go
            raise PermanentFailure(f"Notify {status}: {problem}")
        # 403 (a key or clock problem), 429 (rate or daily limit), 5xx: an operator or
        # time can fix these, so the message is tried again.
        raise TransientFailure(f"Notify {status}: {problem}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        data = await response.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError):
        return {}
    return data if isinstance(data, dict) else {}


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
