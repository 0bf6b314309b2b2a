"""Forgotten addresses kept as keyed digests (HMAC-SHA256 under
``VESTRY_CONTACT_ID_SECRET``) rather than plain SHA-256; contacts record when
they were added.

The plain digests are dropped, not converted: a digest cannot be turned back
into its address to be keyed again, and trying addresses against it is exactly
the weakness being removed (anyone with a list of addresses could tell who had
been forgotten, and match them to their deliveries). So people forgotten before
this revision are no longer recognised as forgotten: a new fact naming them
would be taken in again. Erasing them again with `vestry people forget` keeps
them out for good.

Ledger rows of people forgotten before carry the first 40 characters of the same
plain digest as their recipient; each gets a random stand-in instead (the rows
still stop a resend, by their cause). A mail server's refusal kept as such a
row's error can name the address it refused: any address in it is taken out.
Their contact ids, an HMAC of the address, go too.

Revision ID: 0006
"""

import re
import uuid

import sqlalchemy as sa
from alembic import op

from services.notifications.domain import ADDRESS_REMOVED, FORGOTTEN_PREFIX

revision = "0006"
down_revision = "0005"

# Good enough to find an address in a server's reply; over-matching only removes more.
ADDRESS = re.compile(r"[^\s<>()\[\]'\",;:]+@[^\s<>()\[\]'\",;:]+")


def upgrade() -> None:
    op.add_column("contacts", sa.Column("added_at", sa.DateTime(timezone=True)))
    bind = op.get_bind()
    bind.execute(sa.text("DELETE FROM forgotten"))
    rows = bind.execute(
        sa.text("SELECT id, last_error FROM deliveries WHERE recipient LIKE :forgotten"),
        {"forgotten": f"{FORGOTTEN_PREFIX}%"},
    ).all()
    for delivery_id, last_error in rows:
        bind.execute(
            sa.text(
                "UPDATE deliveries SET recipient = :recipient, last_error = :error,"
                " contact_id = NULL WHERE id = :id"
            ),
            {
                "recipient": f"{FORGOTTEN_PREFIX}{uuid.uuid4().hex}",
                "error": ADDRESS.sub(ADDRESS_REMOVED, last_error) if last_error else last_error,
                "id": delivery_id,
            },
        )
