"""Deliveries remember how many attempts came before an operator's resend, so a resent
row gets its retries afresh.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column(
        "deliveries",
        sa.Column("attempts_before_resend", sa.Integer, nullable=False, server_default="0"),
    )
