"""A membership's billing contact has a postal address besides its email, and the
member's purchase-order reference (``members.reference``) is shown on its invoices:
each invoice keeps the address and reference it was issued with. A member that left
may rejoin as a new membership; ``billing_starts_on`` is the first day it pays for,
later than its first day when it rejoins within months its earlier membership paid for.

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.add_column("memberships", sa.Column("billing_address", sa.String(500)))
    op.add_column("memberships", sa.Column("billing_starts_on", sa.Date))
    op.add_column("invoices", sa.Column("billing_address", sa.String(500)))
    op.add_column("invoices", sa.Column("purchase_order", sa.String(50)))
