"""The store's engine and the kernel's own tables (outbox, inbox and answers), present in every service's store."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    TypeDecorator,
    delete,
    event,
    make_url,
    select,
)
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from contracts.emails import forget_checked
from kernel.writer_turns import take_turns

kernel_metadata = MetaData()

outbox_table = Table(
    "outbox",
    kernel_metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("subject", String(200), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Index("ix_outbox_unsent", "sent_at", "seq"),
)

inbox_table = Table(
    "inbox",
    kernel_metadata,
    Column("scope", String(100), primary_key=True),
    Column("message_id", String(64), primary_key=True),
    Column("handled_at", DateTime(timezone=True), nullable=False),
)

# What each command was answered, by its envelope id, so that a retry is answered the
# same (kernel.commands); kept for ``command_answer_retention_s``.
answers_table = Table(
    "answers",
    kernel_metadata,
    Column("scope", String(200), primary_key=True),  # the command's subject
    Column("message_id", String(64), primary_key=True),
    Column("request_digest", String(64), nullable=False),
    Column("reply", LargeBinary, nullable=False),
    Column("answered_at", DateTime(timezone=True), nullable=False),
    Index("ix_answers_answered_at", "answered_at"),
)


# An execution option: transactions that only read (on SQLite, BEGIN rather than
# BEGIN IMMEDIATE, so that a slow query does not hold every writer up).
READS_ONLY = "vestry_reads_only"
# How long a SQLite writer waits for the write lock before it gives up.
BUSY_TIMEOUT_S = 30


def create_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout and write-locking transactions."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return create_async_engine(url, pool_pre_ping=True)
    if parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
    # Before the BEGIN IMMEDIATE below: a writer waits its turn in this process first.
    take_turns(engine.sync_engine, wait_s=BUSY_TIMEOUT_S, reads_only_option=READS_ONLY)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not the driver, open transactions, so SAVEPOINTs work.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        # Deleted and overwritten content is zeroed, not left in free pages: an erased
        # person's details must not survive in the file (see scrub_after_erasure).
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection) -> None:  # type: ignore[no-untyped-def]
        if connection.get_execution_options().get(READS_ONLY):
            # Under WAL a reader neither waits for the writer nor holds it up.
            connection.exec_driver_sql("BEGIN")
            return
        # Take the write lock up front: a deferred transaction that reads and
        # then writes can fail at once with SQLITE_BUSY when another writer won.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


async def scrub_after_erasure(engine: AsyncEngine, erasures: Sequence[Any] = ()) -> None:
    """Leave no copy of the erased people in the store's files.

    The answers kept so that a retried command gets its first answer quote what
    the command was given (a booker's name, email and phone): those naming an
    erased person go. With ``secure_delete`` SQLite zeroes what a transaction
    frees, but the write-ahead log still holds the pages as they were until a
    checkpoint folds them in; a TRUNCATE checkpoint does so and empties the log.
    PostgreSQL keeps dead row versions until VACUUM reuses them and old WAL
    segments until they are recycled; that edge is stated in the README rather
    than forced here.

    ``erasures`` are the ``PersonErasureRequested`` messages just handled (an email
    and perhaps a phone each). The addresses the process remembers as checked
    (``contracts.emails``) are forgotten too.
    """
    forget_checked()
    traces = [
        str(value).lower().encode()
        for erasure in erasures
        for value in (erasure.email, erasure.phone)
        if value
    ]
    if traces:
        async with engine.begin() as connection:
            rows = await connection.execute(
                select(answers_table.c.scope, answers_table.c.message_id, answers_table.c.reply)
            )
            naming = [
                (scope, message_id)
                for scope, message_id, reply in rows
                if any(trace in bytes(reply).lower() for trace in traces)
            ]
            for scope, message_id in naming:
                await connection.execute(
                    delete(answers_table).where(
                        answers_table.c.scope == scope, answers_table.c.message_id == message_id
                    )
                )
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return
    # A connection of its own, outside any transaction: the engine's connections
    # begin every transaction with BEGIN IMMEDIATE, inside which a checkpoint fails.
    await asyncio.to_thread(_checkpoint, engine.url.database)


def _checkpoint(path: str) -> None:
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def reading_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for transactions that only read: on SQLite they take no write lock."""
    return async_sessionmaker(
        engine.execution_options(**{READS_ONLY: True}), expire_on_commit=False
    )


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session inside one transaction, committed on success and rolled back on error."""
    async with sessions() as session, session.begin():
        yield session


async def finish_abandoned_closes(attempts: int = 50) -> int:
    """End the connection closes SQLAlchemy left behind on aiosqlite; returns how many.

    A statement cancelled mid-flight (a worker stopped while it was writing)
    makes SQLAlchemy invalidate the connection and close it in a shielded
    task; once the cancellation forces the close, that task waits in
    aiosqlite's ``close`` for a worker thread that has already gone, and the
    event loop could never shut down (a service that ignores SIGTERM).
    Cancelling such a task until it ends releases it.
    """
    abandoned = {
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "").endswith("_terminate_graceful_close")
    }
    found = len(abandoned)
    for _ in range(attempts):
        if not abandoned:
            break
        for task in abandoned:
            task.cancel()
        await asyncio.wait(abandoned, timeout=0.05)
        abandoned = {task for task in abandoned if not task.done()}
    return found


def redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def dialect_insert(session: AsyncSession) -> Callable[..., Any]:
    """The INSERT of the session's database that knows ON CONFLICT (PostgreSQL's, else
    SQLite's)."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


async def upsert(
    session: AsyncSession, table: Table, rows: Sequence[Mapping[str, object]], key: list[str]
) -> None:
    """Insert ``rows`` into ``table``, or update those whose ``key`` is there already: one
    statement for all of them (SQLite, PostgreSQL)."""
    if not rows:
        return
    statement = dialect_insert(session)(table)
    changes = {name: statement.excluded[name] for name in rows[0] if name not in key}
    await session.execute(
        statement.on_conflict_do_update(index_elements=key, set_=changes), list(rows)
    )


class UTCDateTime(TypeDecorator[datetime]):
    """An instant stored in UTC and read back timezone-aware, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; give a timezone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if _is_sqlite(dialect) else value

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _is_sqlite(dialect: object) -> bool:
    return getattr(dialect, "name", "") == "sqlite"
