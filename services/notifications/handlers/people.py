"""A person's rights over what this service holds on them: erasure (UK GDPR Article 17)
and access (Article 15)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import derived_message_id
from contracts.people_v1 import (
    ExportPersonFromNotifications,
    PersonErasedFromNotifications,
    PersonErasureRequested,
)
from contracts.personal import is_erased_email
from kernel.commands import CommandContext
from kernel.consumer import HandlerContext
from kernel.outbox import Publisher
from services.notifications import NAME, store
from services.notifications.handlers.completion import settle_broadcast


async def forget(session: AsyncSession, person: store.Person, publish: Publisher) -> store.Erased:
    """Erase ``person`` (``store.erase_person``), then complete any broadcast whose last
    unsent row was theirs: the one way both an erasure and `ForgetContact` forget."""
    broadcasts = await store.open_broadcasts_of(session, person.addresses)
    erased = await store.erase_person(session, person)
    for broadcast_id in sorted(broadcasts):
        await settle_broadcast(session, broadcast_id, publish)
    return erased


async def on_person_erasure_requested(fact: PersonErasureRequested, ctx: HandlerContext) -> None:
    """Forget the person the request names, by email and phone, and say so.

    Acts on every request, once (the inbox sees to redeliveries): their contact,
    consents, topics and directory entry go, and each ledger row that named
    them keeps no address and no content. Publishes PersonErasedFromNotifications
    every time, with ``erased`` empty for a person held nowhere here, already
    forgotten, or read as an erased stand-in (a replay after their key was
    deleted), which erases nothing.
    """
    erased = store.Erased(contacts=0, deliveries=0)
    if not is_erased_email(str(fact.email)):
        person = await store.person_by_email(ctx.session, str(fact.email), fact.phone)
        erased = await forget(ctx.session, person, ctx.publish)
    counts = {"contacts": erased.contacts, "deliveries": erased.deliveries}
    await ctx.publish(
        PersonErasedFromNotifications(
            erasure_id=fact.erasure_id,
            erased={kind: count for kind, count in counts.items() if count},
            # No law asks this service to keep anything of theirs. What stays (a keyed
            # digest of each address, so they are never written to again) names nobody.
            kept={},
        ),
        id=derived_message_id(PersonErasedFromNotifications.TYPE, fact.erasure_id),
    )


async def export_person(
    command: ExportPersonFromNotifications, ctx: CommandContext
) -> dict[str, Any]:
    """Everything held on the person: their contact, what facts taught the directory,
    and every message to them.

    A broadcast's own text (the same for every recipient, and up to megabytes) is
    named by its id, not copied into each delivery, so the reply stays within one
    message; each delivery gives what was particular to them. Changes nothing; an
    unknown person answers empty records, and so does a forgotten one: what stays of
    them is a keyed digest of each address, which names nobody and is read by nothing
    but the check that keeps them from being written to again.
    """
    person = await store.person_by_email(ctx.session, str(command.email), command.phone)
    records = {
        "contacts": [
            _contact(contact, await store.topics_of(ctx.session, contact.id))
            for contact in person.contacts
        ],
        "directory": [_learnt(entry) for entry in person.entries],
        "deliveries": [
            _delivery(row) for row in await store.deliveries_to(ctx.session, person.addresses)
        ],
    }
    return {"service": NAME, "records": {kind: rows for kind, rows in records.items() if rows}}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _contact(contact: store.Contact, topics: Iterable[str]) -> dict[str, Any]:
    return {
        "contact_id": contact.id,
        "email": contact.email,
        "name": contact.name,
        "organisation": contact.organisation,
        "mobile": contact.mobile,
        "email_consent": contact.email_consent,
        "sms_consent": contact.sms_consent,
        "topics": list(topics),
        "source": contact.source,
        "added_at": _iso(contact.added_at),
    }


def _seen(stamp: str) -> str | None:
    """When a fact happened, from a directory stamp (``<instant> <fact id>``)."""
    return stamp.split(" ", 1)[0] or None


def _learnt(entry: store.DirectoryEntry) -> dict[str, Any]:
    return {
        "email": entry.email,
        "contact_id": entry.contact_id,
        "name": entry.name,
        "organisation": entry.organisation,
        "mobile": entry.mobile,
        "sms_opt_in": entry.sms_opt_in,
        "learnt_from": [source for source in entry.sources.split(",") if source],
        "first_seen": _seen(entry.first_seen),
        "last_seen": _seen(entry.last_seen),
    }


def _delivery(row: store.Delivery) -> dict[str, Any]:
    return {
        "delivery_id": row.id,
        "recipient": row.recipient,
        "channel": row.channel,
        "template": row.template,
        "status": row.status,
        "attempts": row.attempts,
        "created_at": _iso(row.created_at),
        "sent_at": _iso(row.sent_at),
        "last_error": row.last_error,
        "broadcast_id": row.broadcast_id,
        "context": row.own_context,
    }
