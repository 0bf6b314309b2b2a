"""Contact ids no longer computed from the address alone: an id that is the old
``uuid5(email)`` (anyone knowing the address could compute it, and so name the
person in an unsubscribe link) becomes the keyed id ``directory.contact_id_for``
gives now, an HMAC of the address under ``VESTRY_CONTACT_ID_SECRET``, read from
the environment of the process that migrates (the service, as it starts).

Every place the old id was kept follows it: the contact, its topics, its
directory entry and its ledger rows. Ids of any other form (given before ids
were derived from the address) are not guessable and stay as they are.

Mail still waiting in the ledger has its unsubscribe link signed again over the
new id (with ``VESTRY_UNSUBSCRIBE_SECRET`` from the same environment). Links
already sent name the old id and are refused: with a new
``VESTRY_UNSUBSCRIBE_SECRET`` (which production requires in place of the example
one) as a changed link; with the same key, by the notifications service, which
knows no contact by the old id and changes nothing. The next broadcast carries
a working link.

Revision ID: 0005
"""

import json
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa
from alembic import op

from contracts.envelope import derived_message_id
from kernel import links
from kernel.settings import Settings
from services.notifications.directory import contact_id_for

revision = "0005"
down_revision = "0004"


def _old_id(email: str) -> str:
    return derived_message_id("contact", email)


def upgrade() -> None:
    _rekey(old=_old_id, new=contact_id_for)


def _rekey(*, old: Callable[[str], str], new: Callable[[str], str]) -> None:
    """Give every person whose id is ``old(email)`` the id ``new(email)``, everywhere."""
    bind = op.get_bind()
    moves: dict[str, str] = {}
    for table, column in (("contacts", "id"), ("directory", "contact_id")):
        for contact_id, email in bind.execute(sa.text(f"SELECT {column}, email FROM {table}")):
            if contact_id == old(email):
                moves[contact_id] = new(email)
    if not moves:
        return
    pairs = [{"old": before, "new": after} for before, after in moves.items()]
    # contact_topics refers to contacts.id (ON DELETE CASCADE, no ON UPDATE): move the
    # topics aside, re-key the contacts, then put the topics back under the new ids.
    topics = [
        {"contact_id": moves[contact_id], "topic": topic}
        for contact_id, topic in bind.execute(
            sa.text("SELECT contact_id, topic FROM contact_topics")
        )
        if contact_id in moves
    ]
    bind.execute(sa.text("DELETE FROM contact_topics WHERE contact_id = :old"), pairs)
    bind.execute(sa.text("UPDATE contacts SET id = :new WHERE id = :old"), pairs)
    bind.execute(sa.text("UPDATE directory SET contact_id = :new WHERE contact_id = :old"), pairs)
    bind.execute(sa.text("UPDATE deliveries SET contact_id = :new WHERE contact_id = :old"), pairs)
    _sign_waiting_links_again(set(moves.values()))
    if topics:
        bind.execute(
            sa.text("INSERT INTO contact_topics (contact_id, topic) VALUES (:contact_id, :topic)"),
            topics,
        )


def _sign_waiting_links_again(moved: set[str]) -> None:
    """Unsent mail to a moved person: its unsubscribe link now names their new id."""
    bind = op.get_bind()
    secret = Settings().unsubscribe_secret
    waiting = bind.execute(
        sa.text(
            "SELECT id, contact_id, context FROM deliveries"
            " WHERE status IN ('pending', 'deferred') AND contact_id IS NOT NULL"
        )
    )
    for delivery_id, contact_id, raw in list(waiting):
        context = json.loads(raw)
        url = context.get("unsubscribe_url")
        if contact_id not in moved or not url:
            continue
        parts = urlsplit(url)
        topic = parse_qs(parts.query).get("t", [""])[0]
        base = f"{parts.scheme}://{parts.netloc}{parts.path.removesuffix('/unsubscribe')}"
        context["unsubscribe_url"] = links.unsubscribe_url(base, secret, contact_id, topic)
        bind.execute(
            sa.text("UPDATE deliveries SET context = :context WHERE id = :id"),
            {"context": json.dumps(context), "id": delivery_id},
        )
