"""Rebuilding a service's read models — the tables it builds only from other
services' facts — by dropping them and replaying the streams from the start.

The rebuild applies facts through the read model's own handlers under a
scope of its own, kept in memory for as long as it runs, so nothing it does
counts as handled for live traffic, and it touches nothing but the read-model
tables. The read models' learners take each fetched batch in a few statements.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from nats.js import JetStreamContext
from sqlalchemy import Table, delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from contracts import Message
from contracts.system_v1 import RebuildReport, ReplayRequest
from kernel.applier import Applier, Handler
from kernel.personal import Keyring
from kernel.replay import Progress, replay
from kernel.store import session_factory
from kernel.streams import stream_for_subject


@dataclass(frozen=True)
class ReadModel:
    """Tables built only from other services' facts, and the handlers that build them."""

    tables: tuple[Table, ...]
    handlers: Mapping[type[Message], Handler]

    def streams(self) -> list[str]:
        return sorted({stream_for_subject(model.SUBJECT).name for model in self.handlers})


async def row_counts(
    sessions: async_sessionmaker[AsyncSession], tables: tuple[Table, ...]
) -> dict[str, int]:
    async with sessions() as session:
        return {
            table.name: await session.scalar(select(func.count()).select_from(table)) or 0
            for table in tables
        }


async def rebuild(
    js: JetStreamContext,
    engine: AsyncEngine,
    read_model: ReadModel,
    *,
    service: str,
    progress: Progress | None = None,
    keyring: Keyring | None = None,
) -> RebuildReport:
    """Drop the read model's rows and replay every stream it is built from, in one transaction.

    Until the rebuild commits, every other reader (a booking being priced,
    say) still sees the old rows; if it fails, they stay as they were.
    """
    sessions = session_factory(engine)
    before = await row_counts(sessions, read_model.tables)
    scope = f"{service}:rebuild:{uuid.uuid4().hex[:12]}"
    async with engine.connect() as connection, connection.begin():
        # Every session below joins this one transaction through a savepoint.
        inside = async_sessionmaker(
            bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )
        async with inside() as session, session.begin():
            for table in reversed(read_model.tables):  # children before parents
                await session.execute(delete(table))
        reports = []
        applied: set[str] = set()  # the rebuild's own inbox: a fact twice is applied once
        for stream in read_model.streams():
            handlers = {
                model: handler
                for model, handler in read_model.handlers.items()
                if stream_for_subject(model.SUBJECT).name == stream
            }
            applier = Applier(
                scope=scope, handlers=handlers, sessions=inside, keyring=keyring, memory=applied
            )
            reports.append(
                await replay(
                    js, applier, ReplayRequest(stream=stream), service=service, progress=progress
                )
            )
    return RebuildReport(
        service=service,
        rows_before=before,
        rows_after=await row_counts(sessions, read_model.tables),
        replayed=reports,
    )
