"""Write transactions on one SQLite store take turns within a process: each waits on
its engine's turn, not in SQLite's busy handler, and every way a transaction ends
(commit, rollback, an error, a connection lost) passes the turn on.

SQLite's busy timeout is set to zero on these engines, so a writer that reached
BEGIN IMMEDIATE while another held the write lock would fail at once with
"database is locked": every test below would fail without the turns."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, event, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from kernel.store import (
    create_engine,
    reading_session_factory,
    session_factory,
)
from kernel.writer_turns import take_turns

metadata = MetaData()
tally = Table("tally", metadata, Column("n", Integer, nullable=False))


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}")

    @event.listens_for(engine.sync_engine, "connect")
    def _no_busy_wait(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=0")
        cursor.close()

    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


async def count(engine: AsyncEngine) -> int:
    async with session_factory(engine)() as session:
        return await session.scalar(select(func.count()).select_from(tally)) or 0


async def test_forty_writers_at_once_all_commit_one_after_another(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    inside = 0
    most_inside = 0

    async def write(n: int) -> None:
        nonlocal inside, most_inside
        async with sessions() as session, session.begin():
            await session.execute(insert(tally).values(n=n))
            inside += 1
            most_inside = max(most_inside, inside)
            await asyncio.sleep(0.002)  # hold the write lock across a wait of the loop
            inside -= 1

    await asyncio.gather(*(write(n) for n in range(40)))

    assert await count(engine) == 40
    assert most_inside == 1


async def test_a_rollback_an_error_and_a_lost_connection_each_pass_the_turn_on(
    engine: AsyncEngine,
) -> None:
    sessions = session_factory(engine)

    async with sessions() as session:
        await session.execute(insert(tally).values(n=1))
        await session.rollback()

    with pytest.raises(ZeroDivisionError):
        async with sessions() as session, session.begin():
            await session.execute(insert(tally).values(n=2))
            raise ZeroDivisionError

    async with engine.connect() as connection:
        await connection.begin()
        await connection.execute(insert(tally).values(n=3))
        await connection.invalidate()  # as when the driver reports the connection gone

    async with asyncio.timeout(10):
        async with sessions() as session, session.begin():
            await session.execute(insert(tally).values(n=4))
    assert await count(engine) == 1


async def test_a_reader_does_not_wait_for_a_writers_turn(engine: AsyncEngine) -> None:
    sessions, readers = session_factory(engine), reading_session_factory(engine)
    read = asyncio.Event()

    async def writer() -> None:
        async with sessions() as session, session.begin():
            await session.execute(insert(tally).values(n=1))
            async with asyncio.timeout(5):
                await read.wait()  # holds its turn until the reader has read

    async def reader() -> int:
        async with readers() as session:
            seen = await session.scalar(select(func.count()).select_from(tally)) or 0
        read.set()
        return seen

    holding = asyncio.create_task(writer())
    await asyncio.sleep(0.05)
    assert await reader() == 0  # the writer's row is not committed yet
    await holding
    assert await count(engine) == 1


async def test_a_turn_never_given_back_costs_a_wait_then_sqlite_decides(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'stuck.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    turns = take_turns(engine.sync_engine, wait_s=0.2, reads_only_option="unused")
    # A turn held by a connection no event will ever report ended.
    stuck = asyncio.Lock()
    await stuck.acquire()
    turns._locks[asyncio.get_running_loop()] = stuck

    with caplog.at_level(logging.WARNING, logger="kernel.writer_turns"):
        async with session_factory(engine)() as session, session.begin():
            await session.execute(insert(tally).values(n=1))

    assert await count(engine) == 1
    assert "waited 0 s for its turn" in caplog.text
    await engine.dispose()
