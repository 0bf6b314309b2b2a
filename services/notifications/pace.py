"""Each provider's rate, kept by every replica together: the starting moment of each send.

A send waits for a moment of its own, taken from one row per provider in the store
the replicas share, so that together they never send faster than the provider takes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

# A provider's rate is kept with a margin: ``per_second`` starts take 1 + MARGIN_S
# seconds, not one. A start may come up to LATE_S after its moment (a busy event loop),
# and a message may take a little more or less time to reach the provider than the
# one before; the margin absorbs both, so a provider counting what it receives in any
# one second by its own clock never counts more than the rate. A start later than
# LATE_S gives its moment up and takes a new one: sends delayed together never go
# out together.
MARGIN_S = 0.1
LATE_S = 0.05

TakeStarts = Callable[[int, float], Awaitable[float]]  # (how many, spacing) -> first


class SharedPace:
    """At most ``per_second`` sends a second to one provider from every replica together.

    Each send waits for a starting moment of its own, taken from the store
    (``store.take_send_starts``: one row per provider, moved on atomically), so the
    replicas' moments never overlap however many there are. Sends waiting at once in
    one replica take their moments in one transaction. The moments are wall-clock
    time: replicas on several hosts need clocks that agree to well within LATE_S.
    """

    def __init__(
        self, take: TakeStarts, per_second: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.spacing = (1.0 + MARGIN_S) / per_second
        self._take = take
        self._clock = clock
        self._waiting: list[asyncio.Future[float]] = []
        self._taking: asyncio.Task[None] | None = None

    async def wait(self, taken: float | None = None) -> None:
        """Return at this send's moment, never before it and at most LATE_S after it.

        ``taken`` is a moment this send took already (with its row's claim); if it has
        passed by more than LATE_S, another is taken."""
        while True:
            start = taken if taken is not None else await self._start()
            taken = None
            delay = start - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._clock() - start <= LATE_S:
                return

    async def _start(self) -> float:
        moment: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting.append(moment)
        if self._taking is None or self._taking.done():
            self._taking = asyncio.ensure_future(self._take_for_waiting())
        return await moment

    async def _take_for_waiting(self) -> None:
        while self._waiting:
            waiting, self._waiting = self._waiting, []
            try:
                first = await self._take(len(waiting), self.spacing)
            except Exception as error:  # the store is away: those sends fail, and retry
                for moment in waiting:
                    if not moment.done():
                        moment.set_exception(error)
                continue
            for n, moment in enumerate(waiting):
                if not moment.done():  # a send cancelled meanwhile leaves its moment unused
                    moment.set_result(first + n * self.spacing)


def starts_in_process(clock: Callable[[], float] = time.time) -> TakeStarts:
    """Starting moments kept in this process alone: for a sender without a store."""
    next_start = 0.0

    async def take(count: int, spacing: float) -> float:
        nonlocal next_start
        first = max(next_start, clock())
        next_start = first + count * spacing
        return first

    return take
