"""The contact directory as learnt from facts, in a table of its own (a read model
that `vestry rebuild notifications` drops and replays); a contact's consents
become the person's own choices, None where they made none.

People learnt from facts before this revision are copied into the directory
and keep their contact rows, consents included, as they were.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

from services.notifications.directory import contact_id_for

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    directory = op.create_table(
        "directory",
        sa.Column("email", sa.String(320), primary_key=True),
        sa.Column("contact_id", sa.String(36), nullable=False),
        sa.Column("sources", sa.String(60), nullable=False),
        sa.Column("name", sa.String(200)),
        sa.Column("name_stamp", sa.String(80), nullable=False),
        sa.Column("organisation", sa.String(200)),
        sa.Column("organisation_stamp", sa.String(80), nullable=False),
        sa.Column("mobile", sa.String(20)),
        sa.Column("mobile_stamp", sa.String(80), nullable=False),
        sa.Column("sms_opt_in", sa.Boolean, nullable=False),
        sa.Column("first_seen", sa.String(80), nullable=False),
        sa.Column("last_seen", sa.String(80), nullable=False),
    )
    op.create_index("ix_directory_contact_id", "directory", ["contact_id"])
    # On SQLite the batch below copies `contacts` and drops the original; with foreign
    # keys on, that drop cascades to contact_topics. Keep people's topics across it.
    bind = op.get_bind()
    topics = [
        {"contact_id": contact_id, "topic": topic}
        for contact_id, topic in bind.execute(sa.text("SELECT contact_id, topic FROM contact_topics"))
    ]
    with op.batch_alter_table("contacts") as contacts:
        contacts.alter_column("email_consent", existing_type=sa.Boolean, nullable=True)
        contacts.alter_column("sms_consent", existing_type=sa.Boolean, nullable=True)
    if topics and not bind.execute(sa.text("SELECT 1 FROM contact_topics LIMIT 1")).first():
        bind.execute(
            sa.text("INSERT INTO contact_topics (contact_id, topic) VALUES (:contact_id, :topic)"),
            topics,
        )

    learnt = op.get_bind().execute(
        sa.text(
            "SELECT email, source, name, organisation, mobile, sms_consent"
            " FROM contacts WHERE source <> 'cli'"
        )
    )
    rows = [
        {
            "email": email,
            "contact_id": contact_id_for(email),
            "sources": source,
            "name": name,
            "name_stamp": "",
            "organisation": organisation,
            "organisation_stamp": "",
            "mobile": mobile,
            "mobile_stamp": "",
            "sms_opt_in": bool(sms_consent and mobile),
            "first_seen": "",
            "last_seen": "",
        }
        for email, source, name, organisation, mobile, sms_consent in learnt
    ]
    if rows:
        op.bulk_insert(directory, rows)
