"""Upgrading a notifications store made before forgotten addresses were keyed and
before a broadcast's text was kept once: plain digests go, forgotten people's rows
keep no plain digest or address, and old broadcasts shrink to one copy of their text
yet render as before."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from kernel import migrations
from kernel.store import create_engine, session_factory
from services.notifications import domain, store
from services.notifications.app import MIGRATIONS

ANN = "ann@bury.example.gov.uk"
PLAIN = hashlib.sha256(ANN.encode()).hexdigest()


async def _ledger_row(connection, n: int, **values: object) -> None:  # type: ignore[no-untyped-def]
    row = {
        "id": f"d{n}",
        "cause": "b1",
        "recipient": f"p{n}@example.gov.uk",
        "context": "{}",
        "status": "sent",
        "last_error": None,
        "contact_id": f"c{n}",
        "broadcast_id": None,
        **values,
    }
    await connection.execute(
        text(
            "INSERT INTO deliveries (id, cause_id, recipient, channel, template, context,"
            " status, attempts, next_attempt_at, last_error, created_at, urgent, broadcast_id,"
            " contact_id, attempts_before_resend) VALUES (:id, :cause, :recipient, 'email',"
            " 'broadcast', :context, :status, 1, '2026-04-01 09:00:00', :last_error,"
            " '2026-04-01 09:00:00', 0, :broadcast_id, :contact_id, 0)"
        ),
        row,
    )


async def test_0006_drops_plain_digests_and_the_plain_digest_forgotten_rows_named(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'notifications.db'}")
    try:
        await migrations.upgrade(engine, MIGRATIONS, revision="0005")
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO forgotten (digest, forgotten_at)"
                    " VALUES (:digest, '2026-04-01 09:00:00')"
                ),
                {"digest": PLAIN},
            )
            await _ledger_row(
                connection,
                1,
                recipient=f"forgotten:{PLAIN[:40]}",
                status="failed",
                last_error=f"SMTPRecipientsRefused: {{'{ANN}': (550, '5.1.1 <{ANN}> unknown')}}",
            )
            await _ledger_row(connection, 2, status="failed", last_error="550 no such user")
            await connection.execute(
                text("INSERT INTO contacts (id, email, source) VALUES ('c9', :email, 'cli')"),
                {"email": "ben@wigan.example.gov.uk"},
            )
        await migrations.upgrade(engine, MIGRATIONS, revision="0006")
        async with engine.connect() as connection:
            forgotten = (await connection.execute(text("SELECT * FROM forgotten"))).all()
            rows = {
                row.id: row
                for row in await connection.execute(
                    text("SELECT id, recipient, last_error, contact_id FROM deliveries")
                )
            }
            added = (await connection.execute(text("SELECT added_at FROM contacts"))).all()
    finally:
        await engine.dispose()

    assert forgotten == []
    old = rows["d1"]
    assert domain.is_forgotten_recipient(old.recipient)
    assert PLAIN[:40] not in old.recipient and old.contact_id is None
    assert ANN not in old.last_error and "550" in old.last_error
    assert (rows["d2"].recipient, rows["d2"].last_error, rows["d2"].contact_id) == (
        "p2@example.gov.uk",
        "550 no such user",
        "c2",
    )
    assert added == [(None,)]  # added before the column: not known when


async def test_0007_keeps_an_old_broadcasts_text_once_and_its_rows_render_as_before(
    tmp_path: Path,
) -> None:
    shared = {"headline": "Patch now", "body": "A long advisory. " * 500, "topic": "warp"}
    own = [
        {"recipient_name": f"Person {n}", "unsubscribe_url": f"https://u/c{n}"} for n in range(3)
    ]
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'notifications.db'}")
    try:
        await migrations.upgrade(engine, MIGRATIONS, revision="0006")
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO broadcasts (id, topic, template, channels, urgent, recipients,"
                    " planned, skipped_for_consent, created_at) VALUES ('b1', 'warp',"
                    " 'broadcast', 'email', 0, 4, 4, 0, '2026-04-01 09:00:00')"
                )
            )
            for n, mine in enumerate(own):
                await _ledger_row(
                    connection,
                    n,
                    context=json.dumps({**shared, **mine}),
                    status="pending",
                    broadcast_id="b1",
                )
            await _ledger_row(  # a forgotten recipient's row: nothing of theirs, or the text
                connection, 3, recipient="forgotten:x", broadcast_id="b1"
            )
        await migrations.upgrade(engine, MIGRATIONS)
        async with engine.connect() as connection:
            kept = json.loads(
                (await connection.execute(text("SELECT context FROM broadcasts"))).scalar_one()
            )
            contexts = dict(
                (await connection.execute(text("SELECT id, context FROM deliveries"))).all()
            )
        async with session_factory(engine)() as session, session.begin():
            claimed = await store.claim_due(
                session,
                limit=10,
                lease=timedelta(seconds=30),
                now=datetime.now(UTC) + timedelta(days=3650),
            )
    finally:
        await engine.dispose()

    assert kept == shared
    assert [json.loads(contexts[f"d{n}"]) for n in range(3)] == own
    assert contexts["d3"] == "{}"
    rendered = {row.id: row.template_context for row in claimed}
    assert rendered == {f"d{n}": {**shared, **mine} for n, mine in enumerate(own)}
