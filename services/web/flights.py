"""Single flight: concurrent requests for the same public page share one answer.

Fifty people opening the programme at once cost one ListEvents and one render, not
fifty; each still gets an answer made after it asked, so nothing is served stale.
Only pages that are the same for every visitor (no form, no personal data) use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

T = TypeVar("T")


class SingleFlight:
    def __init__(self) -> None:
        self._flying: dict[Hashable, asyncio.Future[object]] = {}

    async def share(self, key: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        """``make()``'s result, shared with every caller that asks for ``key`` meanwhile."""
        flying = self._flying.get(key)
        if flying is None:
            flying = asyncio.ensure_future(make())
            self._flying[key] = flying  # type: ignore[assignment]
            flying.add_done_callback(lambda _: self._flying.pop(key, None))
        return await asyncio.shield(flying)  # type: ignore[return-value]
