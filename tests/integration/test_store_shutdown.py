"""A statement cancelled mid-flight must not leave a connection close behind that keeps
the event loop (and so the service's process) from ever stopping."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from sqlalchemy import text

from kernel.store import create_engine, finish_abandoned_closes

SLOW = (
    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 3000000)"
    " SELECT count(*) FROM n"
)


def abandoned() -> list[asyncio.Task[object]]:
    return [
        task
        for task in asyncio.all_tasks()
        if "_terminate_graceful_close" in getattr(task.get_coro(), "__qualname__", "")
    ]


async def test_a_worker_cancelled_mid_statement_leaves_nothing_running(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")

    async def worker() -> None:
        async with engine.connect() as connection:
            await connection.execute(text(SLOW))

    task = asyncio.create_task(worker())
    await asyncio.sleep(0.2)  # inside the statement
    while not task.done():  # stopped as Service.stop_workers stops a worker
        task.cancel()
        await asyncio.wait([task], timeout=0.05)
    await engine.dispose()
    await asyncio.sleep(0.2)
    assert abandoned(), "the cancelled statement left no close behind: nothing tested"

    assert await finish_abandoned_closes() >= 1
    assert abandoned() == []
    for _ in range(200):  # the statement itself runs on in its thread: let it end here
        if not any("_connection_worker_thread" in t.name for t in threading.enumerate()):
            break
        await asyncio.sleep(0.05)
