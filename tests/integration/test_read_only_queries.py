"""A query answered as ``reads_only`` takes no write lock on SQLite: while a slow one
is still in its transaction (a document being printed), commands that write go
through. A query that writes fails instead of writing unlocked, and nothing of a
query is kept, a refusal included."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from sqlalchemy import Column, MetaData, String, Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from contracts import Envelope, Message
from contracts.system_v1 import Reply
from kernel.commands import CommandContext, Refused, answer_once
from kernel.store import (
    answers_table,
    create_engine,
    kernel_metadata,
    reading_session_factory,
    session_factory,
)


class Note(Message):
    """Command (tests only): write a word down."""

    TYPE: ClassVar[str] = "TestNote"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "test.cmd.note"
    KIND: ClassVar[Literal["command"]] = "command"

    word: str


class Look(Message):
    """Command (tests only): count the words written down."""

    TYPE: ClassVar[str] = "TestLook"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "test.cmd.look"
    KIND: ClassVar[Literal["command"]] = "command"

    word: str = ""


metadata = MetaData()
words = Table("words", metadata, Column("word", String(40), primary_key=True))


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.sqlite3'}")
    async with engine.begin() as connection:
        await connection.run_sync(kernel_metadata.create_all)
        await connection.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


async def note(command: Note, ctx: CommandContext) -> dict[str, Any]:
    await ctx.session.execute(words.insert().values(word=command.word))
    return {"noted": command.word}


async def ask(
    sessions: async_sessionmaker[AsyncSession],
    command: Message,
    handler: Any,
    *,
    reads_only: bool = False,
) -> Reply:
    raw = await answer_once(
        Envelope.wrap(command).to_bytes(),
        model=type(command),
        handler=handler,
        sessions=sessions,
        on_commit=lambda: None,
        reads_only=reads_only,
    )
    return Reply.model_validate_json(raw)


async def count(engine: AsyncEngine, table: Table) -> int:
    async with session_factory(engine)() as session:
        return await session.scalar(select(func.count()).select_from(table)) or 0


def slow_look(inside: asyncio.Event, release: asyncio.Event) -> Any:
    async def look(command: Look, ctx: CommandContext) -> dict[str, Any]:
        seen = await ctx.session.scalar(select(func.count()).select_from(words))
        inside.set()
        await release.wait()  # still inside the query's transaction
        return {"words": seen}

    return look


async def test_a_write_goes_through_while_a_slow_query_is_still_reading(
    engine: AsyncEngine,
) -> None:
    inside, release = asyncio.Event(), asyncio.Event()
    query = asyncio.create_task(
        ask(
            reading_session_factory(engine),
            Look(),
            slow_look(inside, release),
            reads_only=True,
        )
    )
    await asyncio.wait_for(inside.wait(), 10)

    written = await asyncio.wait_for(ask(session_factory(engine), Note(word="ledger"), note), 5)

    assert written.ok and written.data == {"noted": "ledger"}
    assert not query.done()
    release.set()
    answered = await query
    assert answered.ok and answered.data == {"words": 0}  # what it read when it began
    assert await count(engine, words) == 1
    assert await count(engine, answers_table) == 1  # the write's answer, not the query's


async def test_the_same_query_in_a_writing_transaction_holds_writers_up(
    engine: AsyncEngine,
) -> None:
    """What reads_only avoids: every other transaction begins IMMEDIATE and waits."""
    inside, release = asyncio.Event(), asyncio.Event()
    query = asyncio.create_task(ask(session_factory(engine), Look(), slow_look(inside, release)))
    await asyncio.wait_for(inside.wait(), 10)

    writer = asyncio.create_task(ask(session_factory(engine), Note(word="ledger"), note))
    done, _ = await asyncio.wait({writer}, timeout=0.5)
    assert not done  # still waiting for the lock

    release.set()
    await query
    assert (await asyncio.wait_for(writer, 10)).ok
    assert await count(engine, words) == 1


async def test_a_query_that_writes_fails_and_writes_nothing(engine: AsyncEngine) -> None:
    answer = await ask(reading_session_factory(engine), Note(word="sneaked"), note, reads_only=True)

    assert not answer.ok and answer.error is not None
    assert answer.error.code == "internal"
    assert await count(engine, words) == 0
    assert await count(engine, answers_table) == 0


async def test_a_refused_query_is_answered_and_not_kept(engine: AsyncEngine) -> None:
    async def refuse(command: Look, ctx: CommandContext) -> dict[str, Any]:
        raise Refused("not_found", f"no word {command.word}", "word")

    answer = await ask(reading_session_factory(engine), Look(word="x"), refuse, reads_only=True)

    assert not answer.ok and answer.error is not None
    assert (answer.error.code, answer.error.field) == ("not_found", "word")
    assert await count(engine, answers_table) == 0
