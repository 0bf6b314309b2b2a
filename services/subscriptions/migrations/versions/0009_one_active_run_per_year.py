"""One invoicing run of a year going at a time, in the store: a partial unique index on
``invoice_runs(year)`` over queued and running runs. Replicas asked for a run at once
each found none going and each recorded one; now the second is refused as busy.

A store where that race already left two runs of a year going keeps the oldest and
marks the others interrupted, as a run whose process stopped is; the one kept bills
whoever they left unbilled.

Revision ID: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"

ACTIVE = "status IN ('queued', 'running')"


def upgrade() -> None:
    op.execute(
        sa.text(
            f"""
            UPDATE invoice_runs
            SET status = 'interrupted',
                error = 'another run of the year was going; left to it'
            WHERE {ACTIVE}
              AND EXISTS (
                SELECT 1 FROM invoice_runs AS older
                WHERE older.year = invoice_runs.year
                  AND older.status IN ('queued', 'running')
                  AND (older.created_at < invoice_runs.created_at
                       OR (older.created_at = invoice_runs.created_at
                           AND older.id < invoice_runs.id))
              )
            """
        )
    )
    op.create_index(
        "uq_invoice_runs_active_year",
        "invoice_runs",
        ["year"],
        unique=True,
        sqlite_where=sa.text(ACTIVE),
        postgresql_where=sa.text(ACTIVE),
    )
