"""Events, bookings (with the waiting list) and scheduled reminders.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

UTC_INSTANT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.String(12), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("programme", sa.String(40), nullable=False, index=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("venue", sa.String(300)),
        sa.Column("online_url", sa.String(500)),
        sa.Column("starts_at", UTC_INSTANT, nullable=False, index=True),
        sa.Column("ends_at", UTC_INSTANT, nullable=False),
        sa.Column("capacity", sa.Integer, nullable=False),
        sa.Column("confirmed", sa.Integer, nullable=False),
        sa.Column("arrivals", sa.Integer, nullable=False),
        sa.Column("member_price_minor", sa.Integer, nullable=False),
        sa.Column("non_member_price_minor", sa.Integer, nullable=False),
        sa.Column("booking_opens_at", UTC_INSTANT),
        sa.Column("booking_closes_at", UTC_INSTANT, nullable=False),
        sa.Column("places_per_organisation", sa.Integer),
        sa.Column("waiting_list", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("created_at", UTC_INSTANT, nullable=False),
        sa.Column("updated_at", UTC_INSTANT, nullable=False),
        sa.CheckConstraint("confirmed >= 0 AND confirmed <= capacity", name="ck_events_places"),
    )
    op.create_table(
        "bookings",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("reference", sa.String(20), nullable=False, unique=True),
        sa.Column("event_id", sa.String(12), sa.ForeignKey("events.id"), nullable=False),
        sa.Column("arrival", sa.Integer, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("phone", sa.String(20)),
        sa.Column("sms", sa.Boolean, nullable=False),
        sa.Column("member_id", sa.String(40)),
        sa.Column("organisation_name", sa.String(200)),
        sa.Column("organisation_key", sa.String(200)),
        sa.Column("channel", sa.String(12), nullable=False),
        sa.Column("price_minor", sa.Integer, nullable=False),
        sa.Column("member_price", sa.Boolean, nullable=False),
        sa.Column("created_at", UTC_INSTANT, nullable=False),
        sa.Column("confirmed_at", UTC_INSTANT),
        sa.Column("cancelled_at", UTC_INSTANT),
        sa.Column("cancelled_reason", sa.String(20)),
        sa.Column("attendance", sa.String(10)),
        sa.Column("attendance_at", UTC_INSTANT),
    )
    op.create_index("ux_bookings_arrival", "bookings", ["event_id", "arrival"], unique=True)
    op.create_index(
        "ux_bookings_live_email",
        "bookings",
        ["event_id", "email"],
        unique=True,
        sqlite_where=sa.text("status != 'cancelled'"),
        postgresql_where=sa.text("status != 'cancelled'"),
    )
    op.create_index("ix_bookings_queue", "bookings", ["event_id", "status", "arrival"])
    op.create_table(
        "reminders",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("booking_id", sa.String(36), sa.ForeignKey("bookings.id"), nullable=False),
        sa.Column("event_id", sa.String(12), sa.ForeignKey("events.id"), nullable=False),
        sa.Column("hours_before", sa.Integer, nullable=False),
        sa.Column("event_sequence", sa.Integer, nullable=False),
        sa.Column("due_at", UTC_INSTANT, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("sent_at", UTC_INSTANT),
    )
    op.create_index(
        "ux_reminders_slot",
        "reminders",
        ["booking_id", "hours_before", "event_sequence"],
        unique=True,
    )
    op.create_index("ix_reminders_due", "reminders", ["status", "due_at"])
