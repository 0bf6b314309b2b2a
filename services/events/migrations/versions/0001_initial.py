"""Kernel tables and the membership read model.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

from kernel.migrations import create_kernel_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_kernel_tables()
    op.create_table(
        "membership_view",
        sa.Column("membership_id", sa.String(36), primary_key=True),
        sa.Column("member_id", sa.String(36), nullable=False, index=True),
        sa.Column("member_name", sa.String(200), nullable=False),
        sa.Column("tier", sa.String(40), nullable=False),
        sa.Column("starts_on", sa.Date, nullable=False),
        sa.Column("ends_on", sa.Date),
    )
