"""The door's one way in: a command over NATS request/reply, answered or refused.

Pages call ``ask``; a refusal comes back as ``CommandFailed`` carrying the
service's own code, message and field, and a service that does not answer as
``ServiceUnavailable``, which the app turns into a 503 page.
"""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client

from contracts import Message
from kernel.commands import CommandFailed, ServiceUnavailable, request

__all__ = ["CommandFailed", "Gateway", "ServiceUnavailable"]


class Gateway:
    def __init__(self, client: Client, *, timeout: float) -> None:
        self._client = client
        self._timeout = timeout

    async def ask(self, command: Message) -> dict[str, Any]:
        """The reply's data; raises CommandFailed (refused) or ServiceUnavailable."""
        return await request(self._client, command, timeout=self._timeout)
