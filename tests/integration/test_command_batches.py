"""The kernel's batch writer (``kernel.commands.CommandBatcher``) on a real SQLite store:
commands answered in arrival order, each only once its batch has committed; a refusal
answers its sender alone; a batch that fails is answered one command at a time, so only
the one at fault fails; facts of accepted commands only, in the same transaction."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from sqlalchemy import Column, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts import Envelope, Message
from kernel.commands import BatchAnswer, CommandBatcher, CommandContext, Refused
from kernel.store import create_engine, kernel_metadata, outbox_table, session_factory


class Greet(Message):
    """Command (tests only): greet someone."""

    TYPE: ClassVar[str] = "TestGreet"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "test.cmd.greet"
    KIND: ClassVar[Literal["command"]] = "command"

    name: str


class Greeted(Message):
    """Fact (tests only): someone was greeted."""

    TYPE: ClassVar[str] = "TestGreeted"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "test.fact.greeted"
    KIND: ClassVar[Literal["fact"]] = "fact"

    name: str


metadata = MetaData()
greetings = Table("greetings", metadata, Column("name", String(40), primary_key=True))


batch_sizes: list[int] = []


async def greet_all(batch: Sequence[tuple[Greet, CommandContext]]) -> list[BatchAnswer]:
    """Decide every command first, then write the rows of those accepted in one statement."""
    batch_sizes.append(len(batch))
    if any(command.name == "boom" for command, _ in batch):
        raise RuntimeError("boom")
    answers: list[BatchAnswer] = []
    rows = []
    for command, ctx in batch:
        if command.name.startswith("nobody"):
            await ctx.publish(Greeted(name=command.name))  # dropped: the command is refused
            answers.append(Refused("not_found", f"no one called {command.name}", "name"))
            continue
        rows.append({"name": command.name})
        await ctx.publish(Greeted(name=command.name))
        answers.append({"greeted": command.name})
    if rows:
        await batch[0][1].session.execute(greetings.insert(), rows)
    return answers


@pytest.fixture(autouse=True)
def _fresh_batch_sizes() -> None:
    batch_sizes.clear()


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.sqlite3'}")
    async with engine.begin() as connection:
        await connection.run_sync(kernel_metadata.create_all)
        await connection.run_sync(metadata.create_all)
    yield session_factory(engine)
    await engine.dispose()


async def greeted(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        return list(await session.scalars(select(greetings.c.name).order_by(greetings.c.name)))


async def facts(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        payloads = await session.scalars(
            select(outbox_table.c.payload).order_by(outbox_table.c.seq)
        )
        return [Envelope.from_bytes(payload).data["name"] for payload in payloads]


async def send(
    batcher: CommandBatcher,
    sessions: async_sessionmaker[AsyncSession],
    names: list[str],
    raw: dict[str, bytes] | None = None,
) -> list[dict[str, Any]]:
    """Submit a command per name, in order, all at once; the answers, in the same order.
    Each answer also records whether its greeting was already committed when it left."""
    answers: dict[int, dict[str, Any]] = {}
    done = asyncio.Event()

    def responder(n: int, name: str):  # type: ignore[no-untyped-def]
        async def respond(data: bytes) -> None:
            reply = json.loads(data)
            reply["committed"] = name in await greeted(sessions)
            answers[n] = reply
            if len(answers) == len(names):
                done.set()

        return respond

    for n, name in enumerate(names):
        payload = (raw or {}).get(name) or Envelope.wrap(Greet(name=name)).to_bytes()
        batcher.submit(payload, responder(n, name))
    await asyncio.wait_for(done.wait(), 10)
    return [answers[n] for n in range(len(names))]


def batcher_for(sessions: async_sessionmaker[AsyncSession], **options: Any) -> CommandBatcher:
    return CommandBatcher(
        model=Greet, handler=greet_all, sessions=sessions, on_commit=lambda: None, **options
    )


async def test_commands_waiting_together_share_a_transaction_and_are_answered_after_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    batcher = batcher_for(sessions)
    names = [f"person-{n:02d}" for n in range(20)]

    answers = await send(batcher, sessions, names)

    assert [a["data"]["greeted"] for a in answers] == names
    assert all(a["ok"] and a["committed"] for a in answers)
    assert batch_sizes == [16, 4] and batcher.answered == 20
    assert await facts(sessions) == names


async def test_a_refused_or_invalid_command_answers_alone_and_leaves_no_trace(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    batcher = batcher_for(sessions)
    names = ["ann", "nobody-1", "bob", "garbled", "cat"]

    answers = await send(batcher, sessions, names, raw={"garbled": b"not a command"})

    assert [a["ok"] for a in answers] == [True, False, True, False, True]
    assert (answers[1]["error"]["code"], answers[1]["error"]["field"]) == ("not_found", "name")
    assert answers[3]["error"]["code"] == "invalid"
    assert await greeted(sessions) == ["ann", "bob", "cat"]
    assert await facts(sessions) == ["ann", "bob", "cat"]  # none for the refused one


async def test_a_failing_batch_is_answered_one_at_a_time_so_only_the_culprit_fails(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    batcher = batcher_for(sessions)
    # "boom" makes the handler raise; the second "dan" breaks the primary key on insert.
    names = ["ann", "boom", "bob", "dan", "dan", "eve"]

    answers = await send(batcher, sessions, names)

    assert [a["ok"] for a in answers] == [True, False, True, True, False, True]
    assert {answers[1]["error"]["code"], answers[4]["error"]["code"]} == {"internal"}
    assert all(a["committed"] for a in answers if a["ok"])
    assert await greeted(sessions) == ["ann", "bob", "dan", "eve"]
    assert await facts(sessions) == ["ann", "bob", "dan", "eve"]  # each once, in order


async def test_a_rush_is_taken_a_sixth_of_the_queue_at_a_time_up_to_the_limit(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    names = [f"person-{n:03d}" for n in range(120)]

    answers = await send(batcher_for(sessions), sessions, names)

    assert [a["data"]["greeted"] for a in answers] == names
    assert batch_sizes == [20, 16, 16, 16, 16, 16, 16, 4]
    batch_sizes.clear()
    more = [f"later-{n:03d}" for n in range(120)]
    await send(batcher_for(sessions, max_batch=10), sessions, more)
    assert batch_sizes == [10] * 12
