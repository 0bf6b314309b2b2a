"""Upgrading a notifications store made before the directory had its own table: the
people facts named are copied into the directory, and every contact keeps its consents."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from kernel import migrations
from kernel.store import create_engine
from services.notifications.app import MIGRATIONS
from services.notifications.directory import contact_id_for


async def test_people_learnt_before_0004_move_to_the_directory_and_keep_their_consents(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'notifications.db'}")
    try:
        await migrations.upgrade(engine, MIGRATIONS, revision="0003")
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO contacts (id, email, name, organisation, source, mobile,"
                    " email_consent, sms_consent) VALUES"
                    " ('c1', 'ann@bury.example.gov.uk', 'Ann', 'Bury', 'booking',"
                    "  '+447400111222', 1, 1),"
                    " ('c2', 'duty@gm.example.gov.uk', 'Duty', NULL, 'cli', NULL, 0, 0)"
                )
            )
            await connection.execute(
                text(
                    "INSERT INTO contact_topics (contact_id, topic) VALUES"
                    " ('c1', 'warp'), ('c2', 'warp'), ('c2', 'digital')"
                )
            )
        await migrations.upgrade(engine, MIGRATIONS)
        async with engine.connect() as connection:
            directory = (await connection.execute(text("SELECT * FROM directory"))).mappings()
            contacts = await connection.execute(
                text("SELECT id, email_consent, sms_consent FROM contacts ORDER BY id")
            )
            assert [dict(row) for row in directory] == [
                {
                    "email": "ann@bury.example.gov.uk",
                    "contact_id": contact_id_for("ann@bury.example.gov.uk"),
                    "sources": "booking",
                    "name": "Ann",
                    "name_stamp": "",
                    "organisation": "Bury",
                    "organisation_stamp": "",
                    "mobile": "+447400111222",
                    "mobile_stamp": "",
                    "sms_opt_in": 1,
                    "first_seen": "",
                    "last_seen": "",
                }
            ]
            assert [tuple(row) for row in contacts] == [("c1", 1, 1), ("c2", 0, 0)]
            topics = await connection.execute(
                text("SELECT contact_id, topic FROM contact_topics ORDER BY contact_id, topic")
            )
            assert [tuple(row) for row in topics] == [  # nobody loses their subscriptions
                ("c1", "warp"),
                ("c2", "digital"),
                ("c2", "warp"),
            ]
            await connection.execute(  # a consent can now be no choice at all
                text(
                    "INSERT INTO contacts (id, email, source, email_consent, sms_consent)"
                    " VALUES ('c3', 'new@example.gov.uk', 'facts', NULL, NULL)"
                )
            )
    finally:
        await engine.dispose()
