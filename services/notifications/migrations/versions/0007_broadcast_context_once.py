"""A broadcast's data (body, headline, topic: what every recipient's message is
rendered from) is kept once, on the broadcast, instead of in each of its ledger
rows; a row keeps only what is its recipient's own (their name, their
unsubscribe link).

Rows of broadcasts made before are moved over too, so the store shrinks by a
copy of the body per recipient: the shared part is read from the broadcast's
first row that has one, and each row that holds exactly that shared part keeps
only its own. A row that differs (none should) is left whole; a row renders
from the broadcast's part and then its own, so it renders as before either way.

Revision ID: 0007
"""

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"

# What fan_out gives each recipient of their own; everything else is the broadcast's.
OWN = ("recipient_name", "unsubscribe_url")


def upgrade() -> None:
    op.add_column("broadcasts", sa.Column("context", sa.Text))
    bind = op.get_bind()
    broadcasts = bind.execute(sa.text("SELECT id FROM broadcasts")).scalars().all()
    for broadcast_id in broadcasts:
        _move_shared_context(bind, broadcast_id)


def _split(context: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    shared = {key: value for key, value in context.items() if key not in OWN}
    own = {key: value for key, value in context.items() if key in OWN}
    return shared, own


def _move_shared_context(bind: sa.Connection, broadcast_id: str) -> None:
    # One row at a time: a row may hold a body of megabytes.
    ids = (
        bind.execute(
            sa.text("SELECT id FROM deliveries WHERE broadcast_id = :b ORDER BY id"),
            {"b": broadcast_id},
        )
        .scalars()
        .all()
    )
    shared: dict[str, Any] | None = None
    for delivery_id in ids:
        raw = bind.execute(
            sa.text("SELECT context FROM deliveries WHERE id = :id"), {"id": delivery_id}
        ).scalar_one()
        context = json.loads(raw)
        if not context:  # a forgotten recipient's row: nothing left to move
            continue
        its_shared, own = _split(context)
        if shared is None:
            shared = its_shared
            bind.execute(
                sa.text("UPDATE broadcasts SET context = :context WHERE id = :id"),
                {"context": json.dumps(shared), "id": broadcast_id},
            )
        if its_shared == shared:
            bind.execute(
                sa.text("UPDATE deliveries SET context = :context WHERE id = :id"),
                {"context": json.dumps(own), "id": delivery_id},
            )
