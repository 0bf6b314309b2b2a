"""The pace of sends shared by the replicas: one row per provider (email, SMS) holding
the moment its next send may start. Each replica took its own pace before, so N
replicas sent at N times the provider's rate.

Revision ID: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.create_table(
        "send_pace",
        sa.Column("provider", sa.String(40), primary_key=True),
        sa.Column("next_start", sa.Float, nullable=False),
    )
