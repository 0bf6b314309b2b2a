"""A run's totals in 64 bits: ``invoice_runs.net_pence`` and ``gross_pence`` add up
every invoice of the year, and a year of a large partnership passes the 32-bit
integer's £21,474,836.47 (PostgreSQL refused the run's update, and the runner tried
again forever). SQLite's integers are 64-bit already; only PostgreSQL changes.

Revision ID: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"

TOTALS = ("net_pence", "gross_pence")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in TOTALS:
        op.alter_column("invoice_runs", column, type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in TOTALS:
        op.alter_column("invoice_runs", column, type_=sa.Integer(), existing_type=sa.BigInteger())
