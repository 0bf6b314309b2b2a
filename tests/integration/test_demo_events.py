"""The events job of `vestry demo`, against the running events service."""

from __future__ import annotations

from nats.aio.client import Client

from kernel.settings import Settings
from tests.events_support import Clock, events_service
from vestry.demo_events import PROGRAMME, run_events_demo


async def test_demo_publishes_the_programme_fills_the_forum_and_promotes_on_a_cancellation(
    settings: Settings, nc: Client
) -> None:
    async with events_service(settings, Clock.real()):
        summary = await run_events_demo(nc)
        again = await run_events_demo(nc)

    assert summary["events_published"] == summary["events_new"] == len(PROGRAMME) == 20
    assert set(summary["events_by_programme"].values()) == {5}
    assert summary["rush"] | {"member_price": 0} == {
        "requests": 44,
        "confirmed": 30,
        "waitlisted": 14,
        "already_booked": 0,
        "refused": 0,
        "member_price": 0,
    }
    assert summary["cancellation"]["cancelled"] and len(summary["cancellation"]["promoted"]) == 1
    assert summary["rush_event_now"] == {"capacity": 30, "confirmed": 30, "waiting": 13}
    assert summary["feed_events"] == 20
    # A second run reuses the programme; only the officer who cancelled books again.
    assert again["events_new"] == 0
    assert (again["rush"]["already_booked"], again["rush"]["waitlisted"]) == (43, 1)
    assert again["rush_event_now"] == {"capacity": 30, "confirmed": 30, "waiting": 13}
