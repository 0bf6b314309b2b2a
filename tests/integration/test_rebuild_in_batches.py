"""A rebuild learns whole batches at once, yet a fact that fails is still dead-lettered
alone, and a fact that reached the stream twice is learnt once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nats.aio.client import Client

from contracts import Envelope
from contracts.subscriptions_v1 import MembershipStarted
from contracts.system_v1 import RebuildRequest
from kernel.applier import Learner
from kernel.deadletter import read_dead_letters
from kernel.runtime import Service
from kernel.settings import Settings
from services.events.app import MIGRATIONS
from services.events.handlers.memberships import learn_memberships
from services.events.store import MembershipView
from tests.stack import membership_started, membership_views


async def learn_unless_council_13(session: Any, facts: Sequence[tuple[Any, Envelope]]) -> None:
    if any(fact.member_name == "Council 13" for fact, _ in facts):
        raise ValueError("Council 13 cannot be priced")
    await learn_memberships(session, facts)


async def test_a_failing_fact_in_a_rebuilt_batch_is_dead_lettered_alone_and_a_copy_learnt_once(
    settings: Settings, nc: Client, streams: None
) -> None:
    js = nc.jetstream()
    twice = Envelope.wrap(membership_started(20))
    for number in range(10, 16):
        envelope = Envelope.wrap(membership_started(number))
        await js.publish(MembershipStarted.SUBJECT, envelope.to_bytes())
    for copy in ("first", "second"):  # the same fact, published again past its dedupe
        await js.publish(MembershipStarted.SUBJECT, twice.to_bytes(), headers={"Nats-Msg-Id": copy})
    probe = Service("probe", migrations_dir=MIGRATIONS, settings=settings)
    learner = Learner(learn_unless_council_13)
    probe.read_model([MembershipView.__table__], {MembershipStarted: learner})
    async with probe.running():
        report = await probe.rebuild(RebuildRequest())
        views = await membership_views(probe)

    (replayed,) = report.replayed
    assert (replayed.matched, replayed.applied, replayed.skipped, replayed.failed) == (8, 6, 1, 1)
    assert views == 6 and report.rows_after == {"membership_view": 6}
    letters = await read_dead_letters(js)
    assert [letter.kind for letter in letters] == ["handler"]
    assert "Council 13 cannot be priced" in letters[0].error
