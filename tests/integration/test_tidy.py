"""What the kernel keeps of its own bookkeeping: a published outbox row only past
JetStream's duplicate window, a handled message id only as long as replays reach
back, and nothing unpublished, ever."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

from kernel.outbox import OutboxRelay
from kernel.store import create_engine, inbox_table, kernel_metadata, outbox_table, session_factory

DAY = 24 * 3600.0


async def test_published_rows_and_old_message_ids_go_and_unpublished_rows_stay(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.sqlite3'}")
    async with engine.begin() as connection:
        await connection.run_sync(kernel_metadata.create_all)
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=3), now - timedelta(hours=1)
    rows = [
        ("published long ago", old, old),
        ("published lately", recent, recent),
        ("never published", old, None),
    ]
    async with sessions() as session, session.begin():
        await session.execute(
            insert(outbox_table),
            [
                {
                    "id": id_,
                    "subject": "events.booking.confirmed",
                    "payload": b"{}",
                    "created_at": created,
                    "sent_at": sent,
                }
                for id_, created, sent in rows
            ],
        )
        await session.execute(
            insert(inbox_table),
            [
                {"scope": "events", "message_id": "handled long ago", "handled_at": old},
                {"scope": "events", "message_id": "handled lately", "handled_at": recent},
            ],
        )
    keeping_ids = OutboxRelay(sessions, None, keep_sent_s=2 * DAY)  # type: ignore[arg-type]
    assert (await keeping_ids.tidy())[:2] == (1, 0)  # ids kept: the default

    forgetting = OutboxRelay(sessions, None, keep_sent_s=2 * DAY, keep_handled_s=2 * DAY)  # type: ignore[arg-type]
    assert (await forgetting.tidy())[:2] == (0, 1)
    async with sessions() as session:
        left = set(await session.scalars(select(outbox_table.c.id)))
        ids = set(await session.scalars(select(inbox_table.c.message_id)))
        assert await session.scalar(select(func.count()).select_from(outbox_table)) == 2
    assert left == {"published lately", "never published"}
    assert ids == {"handled lately"}
    await engine.dispose()
