"""Invoicing: tier changes, number series, invoice runs, invoices and lines, payments, reminders.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("phone", sa.String(30)))
    op.create_index("ix_memberships_member_id", "memberships", ["member_id"])
    op.create_table(
        "tier_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("membership_id", sa.String(36), sa.ForeignKey("memberships.id"), nullable=False),
        sa.Column("old_tier", sa.String(40), nullable=False),
        sa.Column("new_tier", sa.String(40), nullable=False),
        sa.Column("effective_on", sa.Date, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "number_series",
        sa.Column("series", sa.String(10), primary_key=True),
        sa.Column("last_number", sa.Integer, nullable=False),
    )
    op.create_table(
        "invoice_runs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("year", sa.Integer, nullable=False, index=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("trigger", sa.String(20), nullable=False),
        sa.Column("issued_on", sa.Date, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("owner", sa.String(80)),
        sa.Column("to_bill", sa.Integer, nullable=False, server_default="0"),
        sa.Column("already_billed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("issued", sa.Integer, nullable=False, server_default="0"),
        sa.Column("skipped", sa.Integer, nullable=False, server_default="0"),
        sa.Column("net_pence", sa.Integer, nullable=False, server_default="0"),
        sa.Column("gross_pence", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.String(500)),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("series", sa.String(10), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("purpose", sa.String(20), nullable=False),
        sa.Column("year", sa.Integer, nullable=False, index=True),
        sa.Column("membership_id", sa.String(36)),
        sa.Column("member_id", sa.String(36), index=True),
        sa.Column("tier", sa.String(40)),
        sa.Column("billed_name", sa.String(200), nullable=False),
        sa.Column("billing_email", sa.String(320), nullable=False),
        sa.Column("issued_on", sa.Date, nullable=False),
        sa.Column("due_on", sa.Date),
        sa.Column("net_pence", sa.Integer, nullable=False),
        sa.Column("vat_pence", sa.Integer, nullable=False),
        sa.Column("gross_pence", sa.Integer, nullable=False),
        sa.Column("paid_pence", sa.Integer, nullable=False, server_default="0"),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("credits_invoice_id", sa.String(36)),
        sa.Column("booking_id", sa.String(64)),
        sa.Column("refund_until", sa.DateTime(timezone=True)),
        sa.Column("run_id", sa.String(36)),
        sa.Column("void_reason", sa.String(200)),
        sa.UniqueConstraint("series", "number", name="uq_invoices_series_number"),
    )
    op.create_index(
        "uq_invoices_recurring",
        "invoices",
        ["membership_id", "year"],
        unique=True,
        sqlite_where=sa.text("purpose = 'recurring'"),
        postgresql_where=sa.text("purpose = 'recurring'"),
    )
    op.create_index(
        "uq_invoices_booking",
        "invoices",
        ["booking_id", "kind"],
        unique=True,
        sqlite_where=sa.text("booking_id IS NOT NULL"),
        postgresql_where=sa.text("booking_id IS NOT NULL"),
    )
    op.create_table(
        "invoice_lines",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("invoice_id", sa.String(36), sa.ForeignKey("invoices.id"), nullable=False, index=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("description", sa.String(300), nullable=False),
        sa.Column("tier", sa.String(40)),
        sa.Column("months", sa.Integer, nullable=False),
        sa.Column("net_pence", sa.Integer, nullable=False),
        sa.Column("vat_basis_points", sa.Integer, nullable=False),
        sa.Column("vat_pence", sa.Integer, nullable=False),
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("invoice_id", sa.String(36), sa.ForeignKey("invoices.id"), nullable=False, index=True),
        sa.Column("amount_pence", sa.Integer, nullable=False),
        sa.Column("received_on", sa.Date, nullable=False),
        sa.Column("reference", sa.String(100)),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "reminders",
        sa.Column("invoice_id", sa.String(36), sa.ForeignKey("invoices.id"), primary_key=True),
        sa.Column("stage", sa.String(10), primary_key=True),
        sa.Column("sent_on", sa.Date, nullable=False),
    )
    op.create_table(
        "automation_marks",
        sa.Column("moment", sa.String(40), primary_key=True),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("done", sa.Boolean, nullable=False, server_default=sa.false()),
    )
