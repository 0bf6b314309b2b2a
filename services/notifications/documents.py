"""The document an invoice or credit-note email carries: the PDF the subscriptions
service prints, asked for by the document's number (``ShowDocument``) when the
email is sent.

Asked for then, not when the fact is applied: applying a fact (live, replayed or
redriven) must not wait on another service, and a ledger row should not hold a
copy of a file its owner can print again. A document gives the same bytes
whenever it is asked for, so a retried or resent email carries the same PDF as the
first, and the same as the CLI and the back office print. If subscriptions does not
answer, the email waits and is tried again like any transient failure; a number it
does not know fails the email, since an invoice email without its invoice is no use.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client

from contracts.subscriptions_v1 import ShowDocument
from kernel.commands import CommandFailed, ServiceUnavailable, request
from services.notifications.failures import PermanentFailure, TransientFailure

# The emails whose template context names a document ("number") that goes with them.
DOCUMENT_TEMPLATES = frozenset({"invoice_issued", "credit_note_issued"})

# Refusals that asking again will not change; anything else (an internal error) may pass.
FINAL = frozenset({"not_found", "invalid", "too_large"})

# Subscriptions prints a document in well under a second; a queue of them takes longer.
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Document:
    filename: str
    maintype: str
    subtype: str
    content: bytes


class Documents:
    """Asks the subscriptions service for documents over NATS request/reply."""

    def __init__(self, client: Callable[[], Client | None], timeout: float = TIMEOUT_S) -> None:
        self._client = client  # the service's connection, made when it starts
        self._timeout = timeout

    async def fetch(self, number: str) -> Document:
        """The PDF of document ``number``; raises TransientFailure or PermanentFailure."""
        client = self._client()
        if client is None:
            raise TransientFailure("not connected to NATS: the document cannot be asked for")
        try:
            answer = await request(
                client, ShowDocument(number=number, format="pdf"), timeout=self._timeout
            )
        except ServiceUnavailable as unavailable:
            raise TransientFailure(f"document {number}: {unavailable}") from None
        except CommandFailed as refused:
            failure = PermanentFailure if refused.error.code in FINAL else TransientFailure
            raise failure(f"document {number}: {refused.error.message}") from None
        return document_from(answer)


def document_from(answer: dict[str, Any]) -> Document:
    """A ShowDocument answer as an attachment."""
    maintype, _, subtype = answer["media_type"].partition(";")[0].strip().partition("/")
    return Document(
        filename=answer["filename"],
        maintype=maintype,
        subtype=subtype,
        content=base64.b64decode(answer["content_base64"], validate=True),
    )
