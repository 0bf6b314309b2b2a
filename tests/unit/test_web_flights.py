"""Single flight: concurrent asks for one public page share one answer; later asks get a new one."""

from __future__ import annotations

import asyncio

import pytest

from services.web.flights import SingleFlight


async def test_concurrent_asks_share_one_answer_and_later_asks_get_a_fresh_one() -> None:
    flights = SingleFlight()
    made = 0

    async def page() -> int:
        nonlocal made
        made += 1
        await asyncio.sleep(0.05)
        return made

    together = await asyncio.gather(*(flights.share("programme", page) for _ in range(50)))
    assert together == [1] * 50 and made == 1
    assert await flights.share("programme", page) == 2  # nothing kept once answered
    assert await flights.share("event", page) == 3  # another page is its own flight


async def test_a_failure_reaches_every_asker_and_is_not_kept() -> None:
    flights = SingleFlight()
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise RuntimeError("events did not answer")

    results = await asyncio.gather(
        *(flights.share("p", failing) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results) and calls == 1
    with pytest.raises(RuntimeError):
        await flights.share("p", failing)
    assert calls == 2


async def test_one_asker_giving_up_does_not_cancel_the_others() -> None:
    flights = SingleFlight()

    async def slow() -> str:
        await asyncio.sleep(0.1)
        return "page"

    impatient = asyncio.ensure_future(flights.share("p", slow))
    patient = asyncio.ensure_future(flights.share("p", slow))
    await asyncio.sleep(0.01)
    impatient.cancel()
    assert await patient == "page"
