"""The store itself refuses impossible money on an invoice: nothing paid below zero or
above the gross, and no money on a void invoice. The handlers check this under a row
lock; the store's rules make a missed lock an error rather than wrong books.

Credit notes are stored with positive amounts and never take payments, so only
invoices are held to their gross.

PostgreSQL gets CHECK constraints. SQLite cannot add one without copying the table
(batch mode), and the copy cannot drop ``invoices`` inside the migration's
transaction while lines, payments and reminders point at it with foreign keys
enforced; triggers enforce the same rules there instead.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

RULES = {
    "ck_invoices_paid_within_gross": (
        "{row}paid_pence >= 0 AND ({row}kind <> 'invoice' OR {row}paid_pence <= {row}gross_pence)"
    ),
    "ck_invoices_nothing_paid_on_void": "{row}status <> 'void' OR {row}paid_pence = 0",
}


def upgrade() -> None:
    _refuse_if_the_books_already_break_the_rules()
    if op.get_bind().dialect.name == "sqlite":
        for name, rule in RULES.items():
            for event in ("INSERT", "UPDATE"):
                op.execute(
                    f"CREATE TRIGGER {name}_{event.lower()} BEFORE {event} ON invoices"
                    f" WHEN NOT ({rule.format(row='NEW.')})"
                    f" BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: {name}'); END"
                )
        return
    for name, rule in RULES.items():
        op.create_check_constraint(name, "invoices", rule.format(row=""))


def _refuse_if_the_books_already_break_the_rules() -> None:
    """Stop with the numbers to look at rather than change money here: which payment
    stands, or what a void invoice's money was, is for the finance team to decide."""
    broken = " OR ".join(f"NOT ({rule.format(row='')})" for rule in RULES.values())
    rows = op.get_bind().execute(
        sa.text(f"SELECT series, number FROM invoices WHERE {broken} ORDER BY series, number")
    )
    numbers = [f"{series}-{number:06d}" for series, number in rows]
    if numbers:
        raise RuntimeError(
            "these invoices have more paid than billed, a negative payment or money on a "
            f"void invoice; correct them, then upgrade again: {', '.join(numbers)}"
        )
