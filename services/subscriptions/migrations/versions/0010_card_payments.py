"""Invoices paid online by card (GOV.UK Pay): ``card_payments`` keeps each attempt to
pay an invoice, from its creation with the provider until it ends, and a payment taken
by card names the provider's payment id. That id is unique among payments, so a card
payment is recorded once however many times the person's return and the provider's
webhooks ask for it, on however many replicas at once.

Revision ID: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    op.add_column("payments", sa.Column("provider_payment_id", sa.String(64)))
    op.create_index(
        "uq_payments_provider_payment_id",
        "payments",
        ["provider_payment_id"],
        unique=True,
        sqlite_where=sa.text("provider_payment_id IS NOT NULL"),
        postgresql_where=sa.text("provider_payment_id IS NOT NULL"),
    )
    op.create_table(
        "card_payments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("invoice_id", sa.String(36), sa.ForeignKey("invoices.id"), nullable=False),
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("provider_payment_id", sa.String(64), nullable=False, unique=True),
        sa.Column("amount_pence", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("finished", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("code", sa.String(10)),
        sa.Column("message", sa.String(200)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True)),
        sa.Column("payment_id", sa.String(36), sa.ForeignKey("payments.id")),
        sa.Column("problem", sa.String(300)),
    )
    op.create_index("ix_card_payments_invoice_id", "card_payments", ["invoice_id"])
