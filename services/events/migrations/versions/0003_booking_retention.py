"""When each past event's bookings were redacted under the retention period.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column("events", sa.Column("bookings_redacted_at", sa.DateTime(timezone=True)))
