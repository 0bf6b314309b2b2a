"""Operators' replay and rebuild, against a real nats-server and SQLite store.

``replay``: N MembershipStarted facts in SUBSCRIPTIONS, every one already in
the notifications service's inbox (written straight to the store, as live
traffic would have left it), replayed into notifications: messages/s for a
replay that must change nothing. ``rebuild``: the events service's view of
memberships, then the notifications service's directory, dropped and rebuilt
from N/2 facts. Baseline: a plain nats-py
pull consumer reading the same stream, in the same run.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

import nats
import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig

from benchmarks.common import Figure, rate
from benchmarks.outbox_inbox import membership_started
from contracts.subscriptions_v1 import MembershipStarted
from contracts.system_v1 import RebuildRequest, ReplayRequest
from kernel.settings import Settings
from kernel.store import inbox_table
from kernel.streams import ensure_streams
from services.events.app import create_service as create_events
from services.notifications.app import create_service as create_notifications
from vestry.natsserver import NatsServer

DESCRIPTION = (
    "replay of already-handled facts into notifications, and `rebuild events|notifications`,"
    " vs raw pull"
)
DEFAULT_COUNT = 100_000


async def publish(url: str, count: int) -> list[str]:
    """``count`` MembershipStarted facts into SUBSCRIPTIONS; returns their message ids."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=30)
        await ensure_streams(js, duplicate_window_s=600)
        ids, acks = [], []
        for number in range(count):
            envelope = membership_started(number)
            ids.append(envelope.id)
            acks.append(
                await js.publish_async(
                    MembershipStarted.SUBJECT,
                    envelope.to_bytes(),
                    headers={"Nats-Msg-Id": envelope.id},
                )
            )
            if len(acks) >= 5_000:
                await asyncio.gather(*acks)
                acks = []
        await asyncio.gather(*acks)
        return ids
    finally:
        await nc.close()


async def raw_pull(url: str, count: int) -> float:
    """Seconds for a plain pull consumer to read ``count`` messages of SUBSCRIPTIONS, 500 at a time."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=30)
        sub = await js.pull_subscribe(
            "subscriptions.membership.started",
            stream="SUBSCRIPTIONS",
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, mem_storage=True),
        )
        received, started = 0, time.monotonic()
        while received < count:
            try:
                received += len(await sub.fetch(500, timeout=2))
            except nats.errors.TimeoutError:
                break
        return time.monotonic() - started
    finally:
        await nc.close()


async def run(count: int) -> list[Figure]:
    with (
        TemporaryDirectory(prefix="vestry-bench-") as tmp,
        NatsServer(Path(tmp) / "jetstream") as server,
    ):
        settings = Settings(data_dir=Path(tmp) / "data", nats_url=server.url, smtp_port=1)
        ids = await publish(server.url, count)
        raw_s = await raw_pull(server.url, count)

        notifications = create_notifications(settings)
        async with notifications.running():
            await notifications.stop_workers()  # the replay alone, no live traffic
            now = datetime.now(UTC)
            async with notifications.sessions() as session, session.begin():
                await session.execute(
                    inbox_table.insert(),
                    [
                        {"scope": "notifications", "message_id": id_, "handled_at": now}
                        for id_ in ids
                    ],
                )
            started = time.monotonic()
            report = await notifications.replay(ReplayRequest(stream="SUBSCRIPTIONS"))
            replay_s = time.monotonic() - started
        assert report.skipped == count and report.applied == 0, report

    # The rebuild gets a stream of its own holding half as many facts (50,000 by default).
    return await _rebuild_figures(count // 2, report.matched, replay_s, raw_s, count)


async def _rebuild_figures(
    rebuilt: int, replayed: int, replay_s: float, raw_s: float, count: int
) -> list[Figure]:
    with (
        TemporaryDirectory(prefix="vestry-bench-") as tmp,
        NatsServer(Path(tmp) / "jetstream") as server,
    ):
        settings = Settings(data_dir=Path(tmp) / "data", nats_url=server.url, smtp_port=1)
        await publish(server.url, rebuilt)
        raw_rebuild_s = await raw_pull(server.url, rebuilt)
        events = create_events(settings)
        async with events.running():
            await events.stop_workers()
            started = time.monotonic()
            report = await events.rebuild(RebuildRequest())
            rebuild_s = time.monotonic() - started
        assert report.rows_after == {"membership_view": rebuilt}, report
        notifications = create_notifications(settings)
        async with notifications.running():
            await notifications.stop_workers()
            started = time.monotonic()
            report = await notifications.rebuild(RebuildRequest())
            directory_s = time.monotonic() - started
        assert report.rows_after == {"directory": rebuilt}, report
    replay_rate, raw_rate = rate(replayed, replay_s), rate(count, raw_s)
    raw_rebuild_rate = rate(rebuilt, raw_rebuild_s)
    return [
        Figure(
            "replay, all already handled", replay_rate, "msgs/s", f"{replayed:,} in {replay_s:.2f}s"
        ),
        Figure("raw nats-py pull (500 a fetch)", raw_rate, "msgs/s", f"{count:,} in {raw_s:.2f}s"),
        Figure("replay / raw", replay_rate / raw_rate, "×"),
        Figure(
            f"rebuild events ({rebuilt:,} facts)",
            rebuild_s,
            "s",
            f"{rate(rebuilt, rebuild_s):,.0f} facts/s; raw pull {raw_rebuild_rate:,.0f}/s",
        ),
        Figure("rebuild events / raw", rate(rebuilt, rebuild_s) / raw_rebuild_rate, "×"),
        Figure(
            f"rebuild notifications ({rebuilt:,} facts)",
            directory_s,
            "s",
            f"{rate(rebuilt, directory_s):,.0f} facts/s",
        ),
        Figure("rebuild notifications / raw", rate(rebuilt, directory_s) / raw_rebuild_rate, "×"),
    ]
