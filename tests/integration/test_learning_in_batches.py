"""Read models learn a whole batch of facts at once (a rebuild, a replay, a busy live
consumer) and end up exactly as if they had learnt the facts one at a time: the
same rows, the latest fact deciding, erased stand-ins and forgotten people left out.
On SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import Envelope, Message
from contracts.events_v1 import Booker, CalendarEntry, ReminderDue
from contracts.personal import ERASED_EMAIL
from contracts.subscriptions_v1 import MembershipChanged, MembershipEnded, MembershipStarted
from kernel import migrations
from kernel.applier import Applier, Decoded, Handler, HandlerContext, Incoming
from kernel.outbox import Publisher
from kernel.store import create_engine, session_factory
from services.events import store as events_store
from services.events.app import MIGRATIONS as EVENTS_MIGRATIONS
from services.events.handlers import (
    on_membership_changed,
    on_membership_ended,
    on_membership_started,
)
from services.notifications import store as notifications_store
from services.notifications.app import MIGRATIONS as NOTIFICATIONS_MIGRATIONS
from services.notifications.handlers.learning import LEARNERS, learn_member
from tests.conftest import fresh_database

MEMBERSHIPS: dict[type[Message], Handler] = {
    MembershipStarted: on_membership_started,
    MembershipChanged: on_membership_changed,
    MembershipEnded: on_membership_ended,
}
START = datetime(2026, 11, 2, 9, tzinfo=UTC)
CALENDAR = CalendarEntry(
    uid="evt-1@vestry",
    sequence=0,
    summary="Customer service forum",
    description="",
    starts_at=datetime(2027, 3, 3, 10, tzinfo=UTC),
    ends_at=datetime(2027, 3, 3, 12, tzinfo=UTC),
    location="Preston Guild Hall",
    status="CONFIRMED",
)


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        return
    # Asked for here, not as an argument, so SQLite cases never wait for PostgreSQL.
    admin_url: str = request.getfixturevalue("postgres_admin_url")
    async with fresh_database(admin_url) as url:
        yield url


async def migrated(url: str, folder: Path) -> AsyncEngine:
    engine = create_engine(url)
    await migrations.upgrade(engine, folder)
    return engine


def wrapped(facts: Sequence[Message]) -> list[Envelope]:
    """The facts in envelopes a minute apart, in the order given."""
    return [
        Envelope.wrap(fact, occurred_at=START + timedelta(minutes=number))
        for number, fact in enumerate(facts)
    ]


async def learnt_together(
    engine: AsyncEngine, handlers: Mapping[type[Message], Handler], envelopes: list[Envelope]
) -> None:
    applier = Applier(scope="batch", handlers=handlers, sessions=session_factory(engine))
    outcome = await applier.apply([await decoded(applier, e, n) for n, e in enumerate(envelopes)])
    assert (outcome.applied, outcome.failed) == (len(envelopes), [])


async def learnt_one_by_one(
    engine: AsyncEngine, handlers: Mapping[type[Message], Handler], envelopes: list[Envelope]
) -> None:
    applier = Applier(scope="one", handlers=handlers, sessions=session_factory(engine))
    for number, envelope in enumerate(envelopes):
        outcome = await applier.apply([await decoded(applier, envelope, number)])
        assert (outcome.applied, outcome.failed) == (1, [])


async def decoded(applier: Applier, envelope: Envelope, sequence: int) -> Decoded:
    item = await applier.decode(
        Incoming(data=envelope.to_bytes(), subject="test", stream="TEST", sequence=sequence + 1)
    )
    assert isinstance(item, Decoded), item
    return item


async def rows(engine: AsyncEngine, table: Table) -> list[dict[str, Any]]:
    async with engine.connect() as connection:
        result = await connection.execute(select(table).order_by(*table.primary_key.columns))
        return [dict(row) for row in result.mappings()]


def started(number: int, *, tier: str = "district") -> MembershipStarted:
    return MembershipStarted(
        membership_id=f"ms-{number}",
        member_id=f"m-{number}",
        member_name=f"Council {number}",
        tier=tier,
        billing_email=f"f{number}@example.gov.uk",
        starts_on=date(2026, 4, 1),
    )


def changed(number: int, tier: str) -> MembershipChanged:
    return MembershipChanged(
        membership_id=f"ms-{number}",
        member_id=f"m-{number}",
        member_name=f"Council {number}",
        old_tier="district",
        new_tier=tier,
        effective_on=date(2026, 9, 1),
    )


def ended(number: int) -> MembershipEnded:
    return MembershipEnded(
        membership_id=f"ms-{number}",
        member_id=f"m-{number}",
        member_name=f"Council {number}",
        ends_on=date(2027, 3, 31),
    )


async def test_a_change_and_an_end_in_one_batch_both_reach_the_price_of_bookings(
    store_url: str, tmp_path: Path
) -> None:
    together = await migrated(store_url, EVENTS_MIGRATIONS)
    one_by_one = await migrated(f"sqlite+aiosqlite:///{tmp_path / 'one.db'}", EVENTS_MIGRATIONS)
    facts = wrapped(
        [
            started(1),
            changed(1, "county"),
            ended(1),  # keeps the county tier it has just moved to
            changed(2, "county"),  # never heard of: starts from the change
            ended(3),  # never heard of: an unknown tier
            started(4),
            ended(4),
            started(5),
        ]
    )
    later = wrapped([changed(5, "metropolitan"), ended(5), started(1, tier="unitary")])
    try:
        await learnt_together(together, MEMBERSHIPS, facts)
        await learnt_together(together, MEMBERSHIPS, later)  # what the first batch left is read
        await learnt_one_by_one(one_by_one, MEMBERSHIPS, facts + later)

        table = events_store.MembershipView.__table__
        assert await rows(together, table) == await rows(one_by_one, table)
        by_id = {row["membership_id"]: row for row in await rows(together, table)}
        assert {key: (row["tier"], row["ends_on"]) for key, row in by_id.items()} == {
            "ms-1": ("unitary", None),
            "ms-2": ("county", None),
            "ms-3": ("unknown", date(2027, 3, 31)),
            "ms-4": ("district", date(2027, 3, 31)),
            "ms-5": ("metropolitan", date(2027, 3, 31)),
        }
    finally:
        await together.dispose()
        await one_by_one.dispose()


async def test_a_handler_between_learnt_facts_sees_what_was_learnt_before_it(
    tmp_path: Path,
) -> None:
    engine = await migrated(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", EVENTS_MIGRATIONS)
    seen: list[str | None] = []

    async def prices_the_change(fact: MembershipChanged, ctx: HandlerContext) -> None:
        known = await events_store.membership_rows(ctx.session, [fact.membership_id])
        seen.append(known[fact.membership_id]["tier"] if known else None)
        await on_membership_changed(fact, ctx)

    handlers = dict(MEMBERSHIPS) | {MembershipChanged: prices_the_change}
    try:
        await learnt_together(
            engine, handlers, wrapped([started(1), changed(1, "county"), ended(1), started(2)])
        )
        assert seen == ["district"]
        view = events_store.MembershipView.__table__
        tiers = [(r["membership_id"], r["tier"]) for r in await rows(engine, view)]
        assert tiers == [("ms-1", "county"), ("ms-2", "district")]
    finally:
        await engine.dispose()


def booker(email: str, name: str, phone: str | None = None) -> Booker:
    return Booker(name=name, email=email, phone=phone, sms=phone is not None)


def reminder(who: Booker, booking: str) -> ReminderDue:
    return ReminderDue(
        booking_id=booking,
        reference=f"BK-{booking}",
        event_id="e-1",
        event_title="Customer service forum",
        booker=who,
        channel="web",
        reminder_id=f"r-{booking}",
        due_at=datetime(2027, 3, 2, 10, tzinfo=UTC),
        hours_before=24,
        calendar=CALENDAR,
    )


async def test_the_directory_learnt_in_one_batch_is_the_one_learnt_fact_by_fact(
    store_url: str, tmp_path: Path
) -> None:
    together = await migrated(store_url, NOTIFICATIONS_MIGRATIONS)
    one_by_one = await migrated(
        f"sqlite+aiosqlite:///{tmp_path / 'one.db'}", NOTIFICATIONS_MIGRATIONS
    )
    for engine in (together, one_by_one):  # forgotten before the facts are read
        async with session_factory(engine)() as session, session.begin():
            for address in ("gone@example.gov.uk", "+447400999999"):
                session.add(
                    notifications_store.Forgotten(
                        digest=notifications_store.forgotten_digest(address), forgotten_at=START
                    )
                )
    ann = "ann.ahmed@bury.example.gov.uk"
    facts = [
        MembershipStarted(
            membership_id="ms-bury",
            member_id="m-bury",
            member_name="Bury Council",
            tier="district",
            billing_email="Ann.Ahmed@bury.example.gov.uk",
            starts_on=date(2026, 4, 1),
        ),
        reminder(booker(ann, "Ann Ahmed", "+447400100001"), "b1"),
        reminder(booker(ERASED_EMAIL, "Erased"), "b2"),  # a stand-in: nobody to learn
        reminder(booker("gone@example.gov.uk", "Gone"), "b3"),  # forgotten: never learnt
        reminder(booker("ben@example.gov.uk", "Ben", "+447400999999"), "b4"),  # mobile forgotten
        reminder(booker(ann, "Ann A. Ahmed"), "b5"),
    ]
    envelopes = wrapped(facts)
    # The one before last happened first: the name it gives is older than Ann's own.
    envelopes[-1] = Envelope.wrap(facts[-1], occurred_at=START - timedelta(days=1))
    try:
        await learnt_together(together, LEARNERS, envelopes[:3])
        await learnt_together(together, LEARNERS, envelopes[3:])
        await learnt_one_by_one(one_by_one, LEARNERS, envelopes)

        table = notifications_store.DirectoryEntry.__table__
        learnt = await rows(together, table)
        assert learnt == await rows(one_by_one, table)
        assert [(r["email"], r["name"], r["mobile"], r["sms_opt_in"]) for r in learnt] == [
            (ann, "Ann Ahmed", "+447400100001", True),
            ("ben@example.gov.uk", "Ben", None, False),
        ]
        assert learnt[0]["sources"] == "booking,membership"
        assert learnt[0]["organisation"] == "Bury Council"
    finally:
        await together.dispose()
        await one_by_one.dispose()


async def test_a_live_handler_reads_back_what_it_has_just_learnt(tmp_path: Path) -> None:
    engine = await migrated(
        f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", NOTIFICATIONS_MIGRATIONS
    )
    first, second = wrapped(
        [
            MembershipStarted(
                membership_id="ms-1",
                member_id="m-1",
                member_name="Bury Council",
                tier="district",
                billing_email="ann@example.gov.uk",
                starts_on=date(2026, 4, 1),
            ),
            MembershipStarted(
                membership_id="ms-2",
                member_id="m-2",
                member_name="Bury and Wigan Shared Services",
                tier="district",
                billing_email="ann@example.gov.uk",
                starts_on=date(2026, 4, 1),
            ),
        ]
    )
    try:
        async with session_factory(engine)() as session, session.begin():
            for envelope in (first, second):
                fact = MembershipStarted.model_validate(envelope.data)
                await learn_member(
                    fact, HandlerContext(session, envelope, Publisher(session, envelope))
                )
                # As a live handler does next, to find whom to write to:
                entry = await session.get(notifications_store.DirectoryEntry, "ann@example.gov.uk")
                assert entry is not None and entry.organisation == fact.member_name
    finally:
        await engine.dispose()
