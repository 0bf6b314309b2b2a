"""Contacts' mobiles, consents and topics; forgotten addresses; broadcasts; ledger
columns for SMS (provider id, segments), urgency, broadcasts and batch claims.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("contacts", sa.Column("mobile", sa.String(20)))
    op.add_column(
        "contacts",
        sa.Column("email_consent", sa.Boolean, nullable=False, server_default=sa.true()),
    )
    op.add_column(
        "contacts",
        sa.Column("sms_consent", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "contact_topics",
        sa.Column(
            "contact_id",
            sa.String(36),
            sa.ForeignKey("contacts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("topic", sa.String(60), primary_key=True),
    )
    op.create_index("ix_contact_topics_topic", "contact_topics", ["topic"])
    op.create_table(
        "forgotten",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("forgotten_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "broadcasts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("topic", sa.String(60), nullable=False),
        sa.Column("template", sa.String(60), nullable=False),
        sa.Column("channels", sa.String(20), nullable=False),
        sa.Column("urgent", sa.Boolean, nullable=False),
        sa.Column("recipients", sa.Integer, nullable=False),
        sa.Column("planned", sa.Integer, nullable=False),
        sa.Column("skipped_for_consent", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
    )
    op.add_column(
        "deliveries", sa.Column("urgent", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.add_column("deliveries", sa.Column("provider_id", sa.String(100)))
    op.add_column("deliveries", sa.Column("segments", sa.Integer))
    op.add_column("deliveries", sa.Column("broadcast_id", sa.String(36)))
    op.add_column("deliveries", sa.Column("contact_id", sa.String(36)))
    op.add_column("deliveries", sa.Column("claim", sa.String(36)))
    op.create_index("ix_deliveries_broadcast_id", "deliveries", ["broadcast_id"])
    op.create_index("ix_deliveries_claim", "deliveries", ["claim"])
    op.create_index("ix_deliveries_due", "deliveries", ["status", "next_attempt_at"])
