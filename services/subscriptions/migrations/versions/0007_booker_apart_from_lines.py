"""A booking's line names its booker in columns of their own, not in its description,
so that erasing the booker (UK GDPR Article 17) clears their name and email and leaves
the line, its amounts and its VAT as HMRC needs them kept. The description, which the
invoice's facts carry, no longer names anyone: "Lean workshop, 10 Jun 2026: a place
(booking BK-1)".

Lines already issued are rewritten the same way: "…: place for Ann Smith (booking BK-1)"
becomes "…: a place (booking BK-1)" with Ann Smith as its booker. A line billed to the
booker themselves (no member) takes the document's email as the booker's; a line billed
to a member did not record the booker's email, so it has none.

Revision ID: 0007
"""

import re

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"

# What booking_chargeable wrote until now, and credit notes copied behind "Cancelled: ".
NAMED_PLACE = re.compile(r"^(?P<head>.*): place for (?P<name>.+) \(booking (?P<ref>[^()]*)\)$")


def upgrade() -> None:
    op.add_column("invoice_lines", sa.Column("booker_name", sa.String(200)))
    op.add_column("invoice_lines", sa.Column("booker_email", sa.String(320)))
    op.create_index("ix_invoice_lines_booker_email", "invoice_lines", ["booker_email"])
    connection = op.get_bind()
    lines = connection.execute(
        sa.text(
            "SELECT invoice_lines.id, invoice_lines.description, invoices.member_id,"
            " invoices.billing_email FROM invoice_lines"
            " JOIN invoices ON invoices.id = invoice_lines.invoice_id"
            " WHERE invoices.purpose IN ('booking', 'booking_refund')"
        )
    ).all()
    for line_id, description, member_id, billing_email in lines:
        named = NAMED_PLACE.match(description)
        if named is None:
            continue
        connection.execute(
            sa.text(
                "UPDATE invoice_lines SET description = :description, booker_name = :name,"
                " booker_email = :email WHERE id = :id"
            ),
            {
                "id": line_id,
                "description": f"{named['head']}: a place (booking {named['ref']})",
                "name": named["name"],
                "email": billing_email.strip().lower() if member_id is None else None,
            },
        )
