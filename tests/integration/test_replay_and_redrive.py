"""Replay and redrive go through the services' idempotent path: nothing happens twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from nats.aio.client import Client

from contracts.subscriptions_v1 import MembershipStarted
from contracts.system_v1 import RedriveRequest, ReplayRequest, Reply, replay_subject
from kernel.applier import HandlerContext
from kernel.deadletter import read_dead_letters
from kernel.runtime import Service
from kernel.settings import Settings
from services.events.app import MIGRATIONS
from services.events.handlers import on_membership_started
from tests.conftest import Mailbox, eventually
from tests.stack import (
    delivery_count,
    join,
    membership_started,
    membership_views,
    publish_fact,
    stack,
)


async def test_replaying_a_whole_stream_into_notifications_sends_nothing_new(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    async with stack(settings) as (_, events, notifications):
        for number in range(5):
            await join(nc, number)
        await eventually(lambda: len(mailbox.mails()) == 5)

        dry = await notifications.replay(ReplayRequest(stream="SUBSCRIPTIONS", dry_run=True))
        report = await notifications.replay(ReplayRequest(stream="SUBSCRIPTIONS"))
        events_report = await events.replay(ReplayRequest(stream="SUBSCRIPTIONS"))
        await asyncio.sleep(1)  # give a wrongly planned delivery time to go out

        assert dry.by_type == {"MembershipStarted.v1": 5} and dry.applied == 0
        assert (report.matched, report.applied, report.skipped, report.failed) == (5, 0, 5, 0)
        assert (events_report.applied, events_report.skipped) == (0, 5)
        assert len(mailbox.mails()) == 5
        assert await delivery_count(notifications) == 5
        assert await membership_views(events) == 5


async def test_replay_rebuilds_what_a_service_missed(
    settings: Settings, nc: Client, streams: None
) -> None:
    probe = await _probe(settings, on_membership_started)
    for number in range(6):
        await publish_fact(nc, membership_started(number))
    async with probe.running():
        await probe.stop_workers()  # live consumption off: only the replay applies
        report = await probe.replay(ReplayRequest(stream="SUBSCRIPTIONS", from_seq=2, to_seq=4))
        assert (report.matched, report.applied, report.first_seq, report.last_seq) == (3, 3, 2, 4)
        assert await membership_views(probe) == 3
        again = await probe.replay(ReplayRequest(stream="SUBSCRIPTIONS"))
        assert (again.matched, again.applied, again.skipped) == (6, 3, 3)
        assert await membership_views(probe) == 6


async def test_replay_since_delivers_only_messages_at_or_after_that_time(
    settings: Settings, nc: Client, streams: None
) -> None:
    for number in range(3):
        await publish_fact(nc, membership_started(number))
    await asyncio.sleep(0.05)
    since = datetime.now(UTC)
    for number in range(3, 5):
        await publish_fact(nc, membership_started(number))
    probe = await _probe(settings, on_membership_started)
    async with probe.running():
        await probe.stop_workers()
        report = await probe.replay(ReplayRequest(stream="SUBSCRIPTIONS", since=since))
    assert (report.matched, report.applied, report.first_seq) == (2, 2, 4)


async def test_replay_with_a_subject_filter_takes_only_matching_messages(
    settings: Settings, nc: Client, streams: None
) -> None:
    await publish_fact(nc, membership_started(1))
    probe = await _probe(settings, on_membership_started)
    async with probe.running():
        nothing = await probe.replay(
            ReplayRequest(stream="SUBSCRIPTIONS", subject="subscriptions.invoice.*")
        )
        some = await probe.replay(
            ReplayRequest(
                stream="SUBSCRIPTIONS", subject="subscriptions.membership.>", dry_run=True
            )
        )
    assert (nothing.subjects, nothing.matched) == ([], 0)
    assert (some.subjects, some.matched) == (["subscriptions.membership.started"], 1)


async def test_replay_over_nats_refuses_a_stream_the_service_does_not_read(
    settings: Settings, nc: Client
) -> None:
    async with stack(settings):
        response = await nc.request(
            replay_subject("events"), b'{"stream": "NOTIFICATIONS"}', timeout=5
        )
        bad = await nc.request(
            replay_subject("events"), b'{"stream": "EVENTS", "from_seq": 0}', timeout=5
        )
        absurd = await nc.request(
            replay_subject("events"), b"[" * 100_000 + b"]" * 100_000, timeout=5
        )
    assert Reply.model_validate_json(absurd.data).error.code == "invalid"  # type: ignore[union-attr]
    reply, invalid = Reply.model_validate_json(response.data), Reply.model_validate_json(bad.data)
    assert reply.error is not None and reply.error.code == "not_consumed"
    assert "events reads PEOPLE, SUBSCRIPTIONS, not NOTIFICATIONS" in reply.error.message
    assert invalid.error is not None and (invalid.error.code, invalid.error.field) == (
        "invalid",
        "from_seq",
    )


async def test_dead_letters_from_a_bug_are_redriven_once_it_is_fixed(
    settings: Settings, nc: Client, streams: None
) -> None:
    bug = {"present": True}

    async def buggy(fact: MembershipStarted, ctx: HandlerContext) -> None:
        if bug["present"]:
            raise RuntimeError("price list missing")
        await on_membership_started(fact, ctx)

    probe = await _probe(settings, buggy)
    async with probe.running():
        for number in range(4):
            await publish_fact(nc, membership_started(number))
        letters = await eventually(lambda: _letters(nc, 4), timeout=20, what="4 dead letters")
        assert all(letter.deliveries == settings.max_deliver for letter in letters)

        still = await probe.redrive(RedriveRequest(sequences=[letters[0].sequence]))
        assert (still.applied, still.failed) == (0, 1)  # the bug is still there
        again = await read_dead_letters(nc.jetstream())
        assert len(again) == 4
        assert max(letter.deliveries for letter in again) == settings.max_deliver + 1

        bug["present"] = False
        fixed = await probe.redrive(RedriveRequest(sequences=[], all=True))
        repeat = await probe.redrive(RedriveRequest(sequences=[], all=True))

        assert (fixed.applied, fixed.failed) == (4, 0)
        assert (repeat.applied, repeat.skipped) == (0, 0)
        assert await read_dead_letters(nc.jetstream()) == []
        assert await membership_views(probe) == 4


async def _probe(settings: Settings, handler) -> Service:  # type: ignore[no-untyped-def]
    probe = Service("probe", migrations_dir=MIGRATIONS, settings=settings)
    probe.consume(MembershipStarted)(handler)
    return probe


async def _letters(nc: Client, count: int) -> list | None:  # type: ignore[type-arg]
    letters = await read_dead_letters(nc.jetstream())
    return letters if len(letters) == count else None
