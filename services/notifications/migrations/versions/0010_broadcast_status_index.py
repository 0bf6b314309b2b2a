"""A broadcast's rows by status: whether any is still to send, asked each time the
sender records a batch of its outcomes, is found in the index at once. The index on
the broadcast alone made that question read every row already sent first, a cost
that grew with the broadcast (a quadratic one, over a broadcast to thousands). The
new index starts with the same column, so it serves whatever the old one did.

Revision ID: 0010
"""

from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    op.create_index("ix_deliveries_broadcast_status", "deliveries", ["broadcast_id", "status"])
    op.drop_index("ix_deliveries_broadcast_id", table_name="deliveries")
