"""Credit notes are set against the invoices they credit: ``credit_allocations`` holds
each part of a credit note set against an invoice, and ``invoices.credited_pence``
their sum on the invoice. An invoice's balance is its total less payments less
credits; the store's rule 0003 widens to match: never more paid and credited than
billed, and neither money nor credit on a void invoice.

Credit notes already issued are set against the invoice they credit, oldest first,
up to what that invoice still owed; the rest stays on the member's account, as a
new credit note's would. Invoices that this settles become ``credited`` (nothing
paid) or ``paid``.

On SQLite the rules are triggers, as in 0003 (same names, new bodies).

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

RULES = {
    "ck_invoices_paid_within_gross": (
        "{row}paid_pence >= 0 AND {row}credited_pence >= 0 AND ({row}kind <> 'invoice'"
        " OR {row}paid_pence + {row}credited_pence <= {row}gross_pence)"
    ),
    "ck_invoices_nothing_paid_on_void": (
        "{row}status <> 'void' OR ({row}paid_pence = 0 AND {row}credited_pence = 0)"
    ),
}


def upgrade() -> None:
    op.add_column(
        "invoices",
        sa.Column("credited_pence", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "credit_allocations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "credit_note_id", sa.String(36), sa.ForeignKey("invoices.id"), nullable=False
        ),
        sa.Column("invoice_id", sa.String(36), sa.ForeignKey("invoices.id"), nullable=False),
        sa.Column("amount_pence", sa.Integer, nullable=False),
        sa.Column("allocated_on", sa.Date, nullable=False),
    )
    op.create_index(
        "ix_credit_allocations_credit_note_id", "credit_allocations", ["credit_note_id"]
    )
    op.create_index("ix_credit_allocations_invoice_id", "credit_allocations", ["invoice_id"])
    _set_issued_credit_notes_against_their_invoices()
    sqlite = op.get_bind().dialect.name == "sqlite"
    for name, rule in RULES.items():
        if sqlite:
            for event in ("INSERT", "UPDATE"):
                op.execute(f"DROP TRIGGER IF EXISTS {name}_{event.lower()}")
                op.execute(
                    f"CREATE TRIGGER {name}_{event.lower()} BEFORE {event} ON invoices"
                    f" WHEN NOT ({rule.format(row='NEW.')})"
                    f" BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: {name}'); END"
                )
        else:
            op.drop_constraint(name, "invoices", type_="check")
            op.create_check_constraint(name, "invoices", rule.format(row=""))


def _set_issued_credit_notes_against_their_invoices() -> None:
    connection = op.get_bind()
    notes = connection.execute(
        sa.text(
            "SELECT n.id, n.gross_pence, n.issued_on, n.credits_invoice_id"
            " FROM invoices n JOIN invoices i ON i.id = n.credits_invoice_id"
            " WHERE n.kind = 'credit_note' AND n.status <> 'void'"
            " AND i.kind = 'invoice' AND i.status <> 'void'"
            " ORDER BY n.number"
        )
    ).all()
    for note_id, credit, issued_on, invoice_id in notes:
        gross, paid, credited = connection.execute(
            sa.text("SELECT gross_pence, paid_pence, credited_pence FROM invoices WHERE id = :id"),
            {"id": invoice_id},
        ).one()
        amount = min(credit, max(gross - paid - credited, 0))
        if amount == 0:
            continue
        connection.execute(
            sa.text(
                "INSERT INTO credit_allocations (credit_note_id, invoice_id, amount_pence,"
                " allocated_on) VALUES (:note, :invoice, :amount, :on)"
            ),
            {"note": note_id, "invoice": invoice_id, "amount": amount, "on": issued_on},
        )
        credited += amount
        settled = gross - paid - credited <= 0
        status = ("paid" if paid else "credited") if settled else ("part_paid" if paid else "issued")
        connection.execute(
            sa.text("UPDATE invoices SET credited_pence = :credited, status = :status WHERE id = :id"),
            {"credited": credited, "status": status, "id": invoice_id},
        )
