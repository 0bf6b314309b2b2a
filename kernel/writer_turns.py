"""Writers to one SQLite store take turns within a process, each woken as the last ends.

SQLite lets one transaction write at a time. A writer that finds the write lock
taken sleeps in SQLite's busy handler (1, 2, 5, 10 ... 100 ms between tries) and
often sleeps well past the release: a service's command writer, its outbox relay
and its consumers meet there all the time, and a booking that met the relay's
marking waited tens of milliseconds for a lock free after one. Here each write
transaction first waits its turn on an asyncio lock of its engine's, in arrival
order, and is woken the moment the one before has committed or rolled back.

SQLite's own lock still guards the store: other processes (a second replica, the
CLI) wait in its busy handler as before. A turn waited for longer than the busy
timeout is given up with a warning and the transaction goes ahead under SQLite's
lock alone, so a turn never released (a connection lost mid-transaction that no
event reported) costs a wait, never a stuck service. Transactions that only read
(``READS_ONLY``) take no turn.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.util.concurrency import await_, in_greenlet

log = logging.getLogger(__name__)


class WriterTurns:
    """The turn of each connection's write transaction on one engine."""

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._held: dict[int, asyncio.Lock] = {}  # by id of the DBAPI connection

    def take(self, dbapi_connection: Any) -> None:
        """Wait for this connection's turn; called as its write transaction begins."""
        if id(dbapi_connection) in self._held or not in_greenlet():
            return
        lock = self._lock()
        if await_(self._acquire(lock)):
            self._held[id(dbapi_connection)] = lock

    def give_back(self, dbapi_connection: Any) -> None:
        """End this connection's turn, if it has one; the next writer is woken."""
        lock = self._held.pop(id(dbapi_connection), None)
        if lock is not None:
            lock.release()

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    async def _acquire(self, lock: asyncio.Lock) -> bool:
        try:
            async with asyncio.timeout(self.wait_s):
                await lock.acquire()
        except TimeoutError:
            log.warning(
                "a write transaction waited %.0f s for its turn; going ahead under "
                "SQLite's lock alone",
                self.wait_s,
            )
            return False
        return True


def take_turns(engine: Engine, *, wait_s: float, reads_only_option: str) -> WriterTurns:
    """Make ``engine``'s write transactions take turns (see the module's docstring)."""
    turns = WriterTurns(wait_s)
    dialect = engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def do_commit(connection: Any) -> None:
        try:
            commit(connection)
        finally:
            turns.give_back(_dbapi(connection))

    def do_rollback(connection: Any) -> None:
        try:
            rollback(connection)
        finally:
            turns.give_back(_dbapi(connection))

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]

    @event.listens_for(engine, "begin")
    def _take(connection: Any) -> None:
        if not connection.get_execution_options().get(reads_only_option):
            turns.take(connection.connection.dbapi_connection)

    # However a connection leaves its transaction (returned, lost, closed), its turn ends.
    for name in ("checkin", "invalidate", "soft_invalidate", "close", "close_detached"):
        event.listen(engine, name, _give_back_on(turns))
    return turns


def _give_back_on(turns: WriterTurns) -> Any:
    def give_back(dbapi_connection: Any, *_: Any) -> None:
        if dbapi_connection is not None:
            turns.give_back(dbapi_connection)

    return give_back


def _dbapi(connection: Any) -> Any:
    """The DBAPI connection behind ``connection`` (a pool's proxy or the DBAPI one)."""
    return getattr(connection, "dbapi_connection", connection)
