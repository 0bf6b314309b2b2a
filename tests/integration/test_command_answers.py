"""A command is answered once per envelope id: a client retrying after a lost reply
gets the first answer, byte for byte, and changes nothing, on either command path
(``kernel.commands.answer_once`` and the batched writer) and on any replica. Replies
carry the request's ids; the envelope is strict; absurd input and answers too large
for one message get structured errors, not silence."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

import nats
import pytest
from nats.aio.client import Client
from sqlalchemy import Column, MetaData, String, Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts import Envelope, Message
from contracts.events_v1 import BookPlace, CancelBooking
from contracts.subscriptions_v1 import ImportMembers, JoinMember, ListMembers
from contracts.system_v1 import Reply
from kernel.commands import BatchAnswer, CommandBatcher, CommandContext, request
from kernel.runtime import Service
from kernel.settings import Settings
from kernel.store import answers_table, create_engine, kernel_metadata, session_factory
from kernel.store import outbox_table as outbox
from services.events.store import Booking
from services.subscriptions import store as subscriptions_store
from services.subscriptions.app import create_service as create_subscriptions
from services.subscriptions.settings import BillingSettings
from tests.conftest import eventually
from tests.events_support import Clock, events_service, fact_count, published_event
from tests.stack import join_command
from vestry.natsserver import NatsServer

DEEP = 100_000


@pytest.fixture
def store_services() -> tuple[str, ...]:
    """Only the events store goes on PostgreSQL in ``store_settings``."""
    return ("events",)


@asynccontextmanager
async def subscriptions(settings: Settings) -> AsyncIterator[Service]:
    """Subscriptions without its calendar: on a real date after 1 April the automation
    would bill a member these tests join (a fact of its own, whenever its first tick
    happens to land), and the tests count the facts a retry leaves."""
    billing = BillingSettings(automation=False)
    async with create_subscriptions(settings, billing=billing).running() as service:
        yield service


async def ask(nc: Client, subject: str, payload: bytes) -> bytes:
    """The reply's bytes, exactly as the service sent them."""
    return (await nc.request(subject, payload, timeout=10)).data


def reply_to(raw: bytes) -> Reply:
    return Reply.model_validate_json(raw)


def envelope_json(command: Message, **changes: Any) -> bytes:
    """``command`` in an envelope, with some of the envelope's fields replaced as a
    careless client might send them."""
    fields = json.loads(Envelope.wrap(command, correlation_id="journey-7").to_bytes())
    return json.dumps({**fields, **changes}).encode()


async def members(service: Service) -> int:
    async with service.sessions() as session:
        return await subscriptions_store.count_members(session)


async def rows(service: Service, table: Table) -> int:
    async with service.sessions() as session:
        return await session.scalar(select(func.count()).select_from(table)) or 0


# The same envelope twice, through a FastStream endpoint (answer_once)


async def test_a_join_sent_twice_is_answered_the_same_bytes_and_joins_once(
    settings: Settings, nc: Client
) -> None:
    async with subscriptions(settings) as service:
        envelope = Envelope.wrap(join_command(1), correlation_id="journey-7")

        first = await ask(nc, JoinMember.SUBJECT, envelope.to_bytes())
        facts_after_first = await rows(service, outbox)
        # The retry rebuilt by the client: same id and command, a new timestamp.
        rebuilt = Envelope.wrap(join_command(1), id=envelope.id, correlation_id="journey-7")
        again = await ask(nc, JoinMember.SUBJECT, rebuilt.to_bytes())
        once_more = await ask(nc, JoinMember.SUBJECT, envelope.to_bytes())

        assert again == first and once_more == first
        reply = reply_to(first)
        assert reply.ok and reply.data is not None and reply.data["member_id"]
        assert (reply.request_id, reply.correlation_id) == (envelope.id, "journey-7")
        assert await members(service) == 1
        assert await rows(service, outbox) == facts_after_first  # no second fact


async def test_the_same_id_on_another_command_is_refused_and_changes_nothing(
    settings: Settings, nc: Client
) -> None:
    async with subscriptions(settings) as service:
        first = Envelope.wrap(join_command(1))
        await ask(nc, JoinMember.SUBJECT, first.to_bytes())

        other = Envelope.wrap(join_command(2), id=first.id)
        reply = reply_to(await ask(nc, JoinMember.SUBJECT, other.to_bytes()))

        assert not reply.ok and reply.error is not None
        assert (reply.error.code, reply.error.field) == ("conflict", "id")
        assert await members(service) == 1


async def test_a_query_is_not_kept_so_asking_again_shows_what_changed(
    settings: Settings, nc: Client
) -> None:
    async with subscriptions(settings) as service:
        await request(nc, join_command(1))
        listing = Envelope.wrap(ListMembers()).to_bytes()
        before = reply_to(await ask(nc, ListMembers.SUBJECT, listing))

        await request(nc, join_command(2))
        after = reply_to(await ask(nc, ListMembers.SUBJECT, listing))

        assert before.data is not None and after.data is not None
        assert (len(before.data["members"]), len(after.data["members"])) == (1, 2)
        async with service.sessions() as session:
            kept = await session.scalars(select(answers_table.c.scope))
            assert set(kept) == {JoinMember.SUBJECT}


async def test_answers_older_than_the_retention_are_forgotten_by_the_relay_tidy(
    settings: Settings, nc: Client
) -> None:
    keeping = settings.model_copy(update={"command_answer_retention_s": 3600})
    async with subscriptions(keeping) as service:
        old = Envelope.wrap(join_command(1))
        first = await ask(nc, JoinMember.SUBJECT, old.to_bytes())
        recent = Envelope.wrap(join_command(2))
        await ask(nc, JoinMember.SUBJECT, recent.to_bytes())
        async with service.sessions() as session, session.begin():
            await session.execute(
                update(answers_table)
                .where(answers_table.c.message_id == old.id)
                .values(answered_at=datetime.now(UTC) - timedelta(hours=2))
            )
        assert service.relay is not None

        _, _, forgotten = await service.relay.tidy()

        assert forgotten == 1
        assert await rows(service, answers_table) == 1
        # Past the window the id is a new command: this one now finds the member exists.
        late = reply_to(await ask(nc, JoinMember.SUBJECT, old.to_bytes()))
        assert reply_to(first).ok and not late.ok and late.error is not None
        assert late.error.code == "conflict" and late.error.field == "name"
        assert await members(service) == 2


# Replies carry the request's ids; the envelope is strict


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"version": "1"}, "version"),
        ({"version": 1.0}, "version"),
        ({"occurred_at": 1_767_225_600}, "occurred_at"),
        ({"causation_id": 7}, "causation_id"),
        ({"data": "{}"}, "data"),
    ],
)
async def test_an_envelope_field_of_the_wrong_type_is_refused_naming_it(
    settings: Settings, nc: Client, changes: dict[str, Any], field: str
) -> None:
    async with subscriptions(settings) as service:
        payload = envelope_json(join_command(1), **changes)

        reply = reply_to(await ask(nc, JoinMember.SUBJECT, payload))

        assert not reply.ok and reply.error is not None
        assert (reply.error.code, reply.error.field) == ("invalid", field)
        assert reply.correlation_id == "journey-7" and reply.request_id
        assert await members(service) == 0
        # Not kept: the same id, sent properly, is answered afresh.
        fixed = envelope_json(join_command(1), id=reply.request_id)
        assert reply_to(await ask(nc, JoinMember.SUBJECT, fixed)).ok


async def test_a_refusal_and_an_invalid_field_carry_the_requests_ids(
    settings: Settings, nc: Client
) -> None:
    async with subscriptions(settings) as _service:
        await request(nc, join_command(1))
        conflict = Envelope.wrap(join_command(1), correlation_id="journey-8")
        bad = envelope_json(join_command(2), data={"name": "Bury Council"})

        refused = reply_to(await ask(nc, JoinMember.SUBJECT, conflict.to_bytes()))
        invalid = reply_to(await ask(nc, JoinMember.SUBJECT, bad))

        assert refused.error is not None and refused.error.code == "conflict"
        assert (refused.request_id, refused.correlation_id) == (conflict.id, "journey-8")
        assert invalid.error is not None and invalid.error.code == "invalid"
        assert invalid.correlation_id == "journey-7"


# Absurd input and oversized answers


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(nested(DEEP), id="nested-envelope"),
        pytest.param(
            b'{"id": "deep-1", "correlation_id": "journey-9", "data": '
            + nested(DEEP)
            + b', "type": "JoinMember", "version": 1}',
            id="nested-data",
        ),
        pytest.param(b"[" * DEEP + b"]" * DEEP, id="nested-list"),
    ],
)
async def test_json_nested_a_hundred_thousand_deep_is_answered_invalid_on_both_paths(
    settings: Settings, nc: Client, payload: bytes
) -> None:
    async with subscriptions(settings) as service, events_service(settings, Clock()):
        for subject in (JoinMember.SUBJECT, BookPlace.SUBJECT):
            reply = reply_to(await ask(nc, subject, payload))

            assert not reply.ok and reply.error is not None, subject
            assert reply.error.code == "invalid", subject
            assert "recursion limit" in reply.error.message, subject

        # Both still answer.
        assert (await request(nc, join_command(1)))["member_id"]
        assert await members(service) == 1


@dataclass
class SmallMessagesServer(NatsServer):
    """A nats-server whose messages carry at most ``max_payload`` bytes."""

    max_payload: int = 16 * 1024

    def command(self) -> list[str]:
        config = self.store_dir.parent / "small-messages.conf"
        config.write_text(f"max_payload: {self.max_payload}\n")
        return [*super().command(), "-c", str(config)]


@pytest.fixture
def small_messages(tmp_path: Path) -> Iterator[SmallMessagesServer]:
    server = SmallMessagesServer(store_dir=tmp_path / "small" / "jetstream")
    server.start()
    yield server
    server.stop()


async def test_an_answer_too_large_for_one_message_is_refused_as_too_large(
    tmp_path: Path, small_messages: SmallMessagesServer
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", nats_url=small_messages.url, duplicate_window_s=600
    )
    nc = await nats.connect(small_messages.url)
    try:
        async with subscriptions(settings) as service:
            for start in (0, 50):
                batch = [join_command(n) for n in range(start, start + 50)]
                await request(nc, ImportMembers(members=batch))
            assert await members(service) == 100

            listing = Envelope.wrap(ListMembers(), correlation_id="journey-10")
            reply = reply_to(await ask(nc, ListMembers.SUBJECT, listing.to_bytes()))

            assert not reply.ok and reply.error is not None
            assert reply.error.code == "too_large"
            assert "16,384" in reply.error.message and "page" in reply.error.message
            assert reply.correlation_id == "journey-10"
            assert await members(service) == 100
    finally:
        await nc.close()


# The batched writer: BookPlace


async def test_a_retried_booking_gets_its_first_reference_from_either_replica(
    store_settings: Settings, nc: Client
) -> None:
    async with events_service(store_settings, Clock(), replicas=2) as services:
        event_id = await published_event(nc, capacity=5)
        envelope = Envelope.wrap(
            BookPlace(event_id=event_id, name="Ada Lovelace", email="ada@council.example"),
            correlation_id="journey-11",
        )

        first = await ask(nc, BookPlace.SUBJECT, envelope.to_bytes())
        # Sent again until each replica has answered it at least once.
        for _ in range(60):
            assert await ask(nc, BookPlace.SUBJECT, envelope.to_bytes()) == first
            if all(s.batchers[BookPlace.SUBJECT].answered for s in services):
                break
        else:
            pytest.fail("one replica answered every retry")
        # And many at once: some wait in one batch together, some race on the two.
        together = await asyncio.gather(
            *(ask(nc, BookPlace.SUBJECT, envelope.to_bytes()) for _ in range(30))
        )

        # A booking whose every try is sent at once, before any has been answered.
        rushed = Envelope.wrap(
            BookPlace(event_id=event_id, name="Grace Hopper", email="grace@council.example")
        ).to_bytes()
        rush = await asyncio.gather(*(ask(nc, BookPlace.SUBJECT, rushed) for _ in range(30)))

        assert set(together) == {first} and len(set(rush)) == 1
        reply, rushed_reply = reply_to(first), reply_to(rush[0])
        assert reply.ok and reply.data is not None and reply.data["status"] == "confirmed"
        assert rushed_reply.ok and rushed_reply.data is not None
        assert (reply.request_id, reply.correlation_id) == (envelope.id, "journey-11")
        async with services[0].sessions() as session:
            references = set(
                await session.scalars(select(Booking.reference).where(Booking.event_id == event_id))
            )
        assert references == {reply.data["reference"], rushed_reply.data["reference"]}
        await eventually(lambda: _confirmed_facts_are(nc, 2))


async def test_a_refused_booking_sent_again_is_refused_the_same_after_a_place_frees(
    settings: Settings, nc: Client
) -> None:
    async with events_service(settings, Clock()):
        event_id = await published_event(nc, capacity=1, waiting_list=False)
        held = await request(
            nc, BookPlace(event_id=event_id, name="Ada Lovelace", email="ada@council.example")
        )
        late = Envelope.wrap(
            BookPlace(event_id=event_id, name="Grace Hopper", email="grace@council.example")
        )
        refused = await ask(nc, BookPlace.SUBJECT, late.to_bytes())
        await request(nc, CancelBooking(reference=held["reference"]))

        again = await ask(nc, BookPlace.SUBJECT, late.to_bytes())
        fresh = await request(
            nc, BookPlace(event_id=event_id, name="Grace Hopper", email="grace@council.example")
        )

        assert again == refused
        assert reply_to(refused).error is not None
        assert reply_to(refused).error.code == "full"  # type: ignore[union-attr]
        assert fresh["status"] == "confirmed"


async def _confirmed_facts_are(nc: Client, expected: int) -> bool:
    return await fact_count(nc, "events.booking.confirmed") == expected


# The batched writer alone, on a store of its own


class Shout(Message):
    """Command (tests only): shout a word, answered with it as loud as asked."""

    TYPE: ClassVar[str] = "TestShout"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "test.cmd.shout"
    KIND: ClassVar[Literal["command"]] = "command"

    word: str
    loudness: int = 1


class Shouted(Message):
    """Fact (tests only): a word was shouted."""

    TYPE: ClassVar[str] = "TestShouted"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "test.fact.shouted"
    KIND: ClassVar[Literal["fact"]] = "fact"

    word: str


metadata = MetaData()
shouts = Table("shouts", metadata, Column("word", String(40), primary_key=True))
handled: list[list[str]] = []


async def shout_all(batch: Sequence[tuple[Shout, CommandContext]]) -> list[BatchAnswer]:
    handled.append([command.word for command, _ in batch])
    for command, ctx in batch:
        await ctx.publish(Shouted(word=command.word))
    await batch[0][1].session.execute(shouts.insert(), [{"word": c.word} for c, _ in batch])
    return [{"shouted": command.word.upper() * command.loudness} for command, _ in batch]


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    handled.clear()
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.sqlite3'}")
    async with engine.begin() as connection:
        await connection.run_sync(kernel_metadata.create_all)
        await connection.run_sync(metadata.create_all)
    yield session_factory(engine)
    await engine.dispose()


async def submit_all(batcher: CommandBatcher, payloads: list[bytes]) -> list[bytes]:
    """Queue every payload at once; their answers, in the same order."""
    answers: dict[int, bytes] = {}
    done = asyncio.Event()

    def responder(n: int):  # type: ignore[no-untyped-def]
        async def respond(data: bytes) -> None:
            answers[n] = data
            if len(answers) == len(payloads):
                done.set()

        return respond

    for n, payload in enumerate(payloads):
        batcher.submit(payload, responder(n))
    await asyncio.wait_for(done.wait(), 10)
    return [answers[n] for n in range(len(payloads))]


async def count(sessions: async_sessionmaker[AsyncSession], table: Table) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(table)) or 0


async def test_a_retry_queued_beside_its_first_try_is_answered_with_it_and_runs_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    batcher = CommandBatcher(
        model=Shout, handler=shout_all, sessions=sessions, on_commit=lambda: None
    )
    ann = Envelope.wrap(Shout(word="ann")).to_bytes()
    bob = Envelope.wrap(Shout(word="bob")).to_bytes()

    answers = await submit_all(batcher, [ann, bob, ann, ann])
    later = await submit_all(batcher, [ann])

    assert handled == [["ann", "bob"]]  # the retries never reached the handler
    assert answers[0] == answers[2] == answers[3] == later[0]
    assert reply_to(answers[0]).data == {"shouted": "ANN"}
    assert await count(sessions, shouts) == 2 and await count(sessions, outbox) == 2


async def test_a_batched_answer_too_large_for_one_message_is_refused_and_changes_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    batcher = CommandBatcher(
        model=Shout,
        handler=shout_all,
        sessions=sessions,
        on_commit=lambda: None,
        max_payload=lambda: 4096,
    )
    loud = Envelope.wrap(Shout(word="loud", loudness=2000)).to_bytes()
    quiet = Envelope.wrap(Shout(word="quiet")).to_bytes()

    answers = [reply_to(raw) for raw in await submit_all(batcher, [loud, quiet])]

    assert answers[0].error is not None and answers[0].error.code == "too_large"
    assert answers[1].ok
    async with sessions() as session:
        assert list(await session.scalars(select(shouts.c.word))) == ["quiet"]
    assert await count(sessions, outbox) == 1 and await count(sessions, answers_table) == 1
