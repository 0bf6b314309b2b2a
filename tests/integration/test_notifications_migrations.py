"""Upgrading a notifications store made before the directory had its own table: the
people facts named are copied into the directory, and every contact keeps its consents.
Upgrading one made while contact ids were uuid5 of the address: they become keyed ids."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import text

from contracts.envelope import derived_message_id
from kernel import links, migrations
from kernel.settings import Settings
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


async def test_0005_gives_people_keyed_ids_everywhere_their_old_id_was(tmp_path: Path) -> None:
    """Ids that were uuid5 of the address become keyed ones: in contacts, their topics,
    the directory and the ledger; waiting mail's unsubscribe link names the new id."""
    ann, ben, cy = "ann@bury.example.gov.uk", "ben@wigan.example.gov.uk", "cy@bolton.example.gov.uk"
    old = {email: derived_message_id("contact", email) for email in (ann, ben)}
    waiting_link = links.unsubscribe_url(
        "https://vestry.example.org", "change-me", old[ann], "warp"
    )
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'notifications.db'}")
    try:
        await migrations.upgrade(engine, MIGRATIONS, revision="0004")
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO contacts (id, email, source) VALUES"
                    " (:ann, :ann_email, 'cli'), ('c3', :cy_email, 'cli')"
                ),
                {"ann": old[ann], "ann_email": ann, "cy_email": cy},
            )
            await connection.execute(
                text(
                    "INSERT INTO contact_topics (contact_id, topic) VALUES"
                    " (:ann, 'warp'), (:ann, 'digital'), ('c3', 'warp')"
                ),
                {"ann": old[ann]},
            )
            for email in (ann, ben):
                await connection.execute(
                    text(
                        "INSERT INTO directory (email, contact_id, sources, name_stamp,"
                        " organisation_stamp, mobile_stamp, sms_opt_in, first_seen, last_seen)"
                        " VALUES (:email, :id, 'booking', '', '', '', 0, '', '')"
                    ),
                    {"email": email, "id": old[email]},
                )
            for n, (recipient, contact_id, status, context) in enumerate(
                [
                    (ann, old[ann], "pending", {"unsubscribe_url": waiting_link}),
                    (ann, old[ann], "sent", {"unsubscribe_url": waiting_link}),
                    (ben, old[ben], "sent", {}),
                ]
            ):
                await connection.execute(
                    text(
                        "INSERT INTO deliveries (id, cause_id, recipient, channel, template,"
                        " context, status, attempts, next_attempt_at, created_at, urgent,"
                        " contact_id, attempts_before_resend) VALUES (:id, :cause, :recipient,"
                        " 'email', 'broadcast', :context, :status, 0, '2026-04-01 09:00:00',"
                        " '2026-04-01 09:00:00', 0, :contact_id, 0)"
                    ),
                    {
                        "id": f"d{n}",
                        "cause": f"b{n}",
                        "recipient": recipient,
                        "context": json.dumps(context),
                        "status": status,
                        "contact_id": contact_id,
                    },
                )
        await migrations.upgrade(engine, MIGRATIONS)
        new = {email: contact_id_for(email) for email in (ann, ben)}
        async with engine.connect() as connection:
            contacts = await connection.execute(text("SELECT email, id FROM contacts"))
            assert dict(contacts.all()) == {ann: new[ann], cy: "c3"}  # c3 was never guessable
            topics = await connection.execute(
                text("SELECT contact_id, topic FROM contact_topics ORDER BY contact_id, topic")
            )
            assert sorted(topics.all()) == sorted(
                [(new[ann], "digital"), (new[ann], "warp"), ("c3", "warp")]
            )
            directory = await connection.execute(text("SELECT email, contact_id FROM directory"))
            assert dict(directory.all()) == new
            ledger = await connection.execute(
                text("SELECT id, contact_id, context FROM deliveries ORDER BY id")
            )
            rows = {row.id: (row.contact_id, json.loads(row.context)) for row in ledger}
        assert [rows[d][0] for d in ("d0", "d1", "d2")] == [new[ann], new[ann], new[ben]]
        assert rows["d0"][1]["unsubscribe_url"] == links.unsubscribe_url(
            "https://vestry.example.org", Settings().unsubscribe_secret, new[ann], "warp"
        )
        assert rows["d1"][1]["unsubscribe_url"] == waiting_link  # sent: as it went
    finally:
        await engine.dispose()
