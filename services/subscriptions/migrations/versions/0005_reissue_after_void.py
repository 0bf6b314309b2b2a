"""A void invoice no longer holds its membership's place for the year: the unique
index "one recurring invoice per membership per billing year" counts only invoices
that are not void, so the next run (or ``vestry invoices reissue``) can bill the
member again under a new number, while the void one keeps its own in the series.
``replaces_invoice_id`` links the new invoice to the one it replaces.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

LIVE_RECURRING = "purpose = 'recurring' AND status <> 'void'"


def upgrade() -> None:
    op.add_column("invoices", sa.Column("replaces_invoice_id", sa.String(36)))
    op.drop_index("uq_invoices_recurring", table_name="invoices")
    op.create_index(
        "uq_invoices_recurring",
        "invoices",
        ["membership_id", "year"],
        unique=True,
        sqlite_where=sa.text(LIVE_RECURRING),
        postgresql_where=sa.text(LIVE_RECURRING),
    )
