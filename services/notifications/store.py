"""The notifications store: contacts, their consents and topics, broadcasts and the delivery ledger."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.notifications.domain import PlannedDelivery, Reachable, forgotten_digest

SETTLED = ("sent", "failed")
OPEN = ("pending", "deferred")


class Base(DeclarativeBase):
    pass


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    organisation: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(40))
    mobile: Mapped[str | None] = mapped_column(String(20))
    email_consent: Mapped[bool] = mapped_column(Boolean, default=True)
    sms_consent: Mapped[bool] = mapped_column(Boolean, default=False)


class ContactTopic(Base):
    __tablename__ = "contact_topics"

    contact_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    topic: Mapped[str] = mapped_column(String(60), primary_key=True, index=True)


class Forgotten(Base):
    """Addresses of people who asked to be forgotten, as digests: never planned for again."""

    __tablename__ = "forgotten"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    forgotten_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Broadcast(Base):
    __tablename__ = "broadcasts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    topic: Mapped[str] = mapped_column(String(60))
    template: Mapped[str] = mapped_column(String(60))
    channels: Mapped[str] = mapped_column(String(20))
    urgent: Mapped[bool] = mapped_column(Boolean)
    recipients: Mapped[int] = mapped_column(Integer)
    planned: Mapped[int] = mapped_column(Integer)
    skipped_for_consent: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Delivery(Base):
    """The ledger: one row per cause × recipient × channel, created once and sent once."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("cause_id", "recipient", "channel", name="uq_delivery_once"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    cause_id: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(320))
    channel: Mapped[str] = mapped_column(String(10))
    template: Mapped[str] = mapped_column(String(60))
    context: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    provider_id: Mapped[str | None] = mapped_column(String(100))
    segments: Mapped[int | None] = mapped_column(Integer)
    broadcast_id: Mapped[str | None] = mapped_column(String(36), index=True)
    contact_id: Mapped[str | None] = mapped_column(String(36))
    claim: Mapped[str | None] = mapped_column(String(36))
    attempts_before_resend: Mapped[int] = mapped_column(Integer, default=0)

    @property
    def template_context(self) -> dict[str, Any]:
        return dict(json.loads(self.context))


# Contacts


async def contact_by_email(session: AsyncSession, email: str) -> Contact | None:
    return await session.scalar(select(Contact).where(Contact.email == email.strip().lower()))


async def find_contact(session: AsyncSession, ref: str) -> Contact | None:
    """A contact by id or email."""
    return await session.get(Contact, ref) or await contact_by_email(session, ref)


async def is_forgotten(session: AsyncSession, address: str) -> bool:
    return await session.get(Forgotten, forgotten_digest(address)) is not None


async def remember_contact(
    session: AsyncSession,
    *,
    email: str,
    name: str | None,
    organisation: str | None,
    source: str,
    mobile: str | None = None,
    sms_consent: bool | None = None,
) -> Contact | None:
    """Add or fill in a contact learnt from a fact; None for someone who asked to be forgotten."""
    email = email.strip().lower()
    if await is_forgotten(session, email):
        return None
    existing = await contact_by_email(session, email)
    if existing is None:
        existing = Contact(
            id=str(uuid.uuid4()),
            email=email,
            name=name,
            organisation=organisation,
            source=source,
            mobile=mobile,
            email_consent=True,
            sms_consent=bool(sms_consent and mobile),
        )
        session.add(existing)
        await session.flush()
        return existing
    existing.name = existing.name or name
    existing.organisation = existing.organisation or organisation
    if mobile:
        existing.mobile = mobile
    if sms_consent and existing.mobile:  # an opt-in on a booking form; opting out is explicit
        existing.sms_consent = True
    return existing


async def topics_of(session: AsyncSession, contact_id: str) -> list[str]:
    return sorted(
        await session.scalars(
            select(ContactTopic.topic).where(ContactTopic.contact_id == contact_id)
        )
    )


def reachable(contact: Contact | None, topics: Iterable[str] = ()) -> Reachable | None:
    if contact is None:
        return None
    return Reachable(
        contact_id=contact.id,
        email=contact.email,
        mobile=contact.mobile,
        email_consent=contact.email_consent,
        sms_consent=contact.sms_consent,
        topics=frozenset(topics),
        name=contact.name,
    )


async def subscribers(session: AsyncSession, topic: str) -> list[Reachable]:
    rows = await session.scalars(
        select(Contact)
        .join(ContactTopic, ContactTopic.contact_id == Contact.id)
        .where(ContactTopic.topic == topic)
        .order_by(Contact.email)
    )
    return [
        Reachable(
            contact_id=c.id,
            email=c.email,
            mobile=c.mobile,
            email_consent=c.email_consent,
            sms_consent=c.sms_consent,
            topics=frozenset({topic}),
            name=c.name,
        )
        for c in rows
    ]


async def subscribe(session: AsyncSession, contact: Contact, topics: Iterable[str]) -> None:
    have = set(await topics_of(session, contact.id))
    for topic in sorted(set(topics) - have):
        session.add(ContactTopic(contact_id=contact.id, topic=topic))
    await session.flush()


async def unsubscribe(session: AsyncSession, contact: Contact, topics: Iterable[str]) -> None:
    await session.execute(
        delete(ContactTopic).where(
            ContactTopic.contact_id == contact.id, ContactTopic.topic.in_(list(topics))
        )
    )


async def open_broadcasts_of(session: AsyncSession, contact: Contact) -> list[str]:
    """Broadcasts with a row still to send to this contact."""
    addresses = [address for address in (contact.email, contact.mobile) if address]
    found = await session.scalars(
        select(Delivery.broadcast_id)
        .where(
            Delivery.recipient.in_(addresses),
            Delivery.status.in_(OPEN),
            Delivery.broadcast_id.is_not(None),
        )
        .distinct()
    )
    return [broadcast_id for broadcast_id in found if broadcast_id]


async def forget(session: AsyncSession, contact: Contact) -> int:
    """Erase the contact; the ledger keeps each row (so nothing is sent again) but not the address.

    Returns how many ledger rows were scrubbed.
    """
    now = datetime.now(UTC)
    scrubbed = 0
    for address in filter(None, (contact.email, contact.mobile)):
        digest = forgotten_digest(address)
        if await session.get(Forgotten, digest) is None:
            session.add(Forgotten(digest=digest, forgotten_at=now))
        # A row not sent yet never will be: there is no one left to send it to.
        await session.execute(
            update(Delivery)
            .where(Delivery.recipient == address, Delivery.status.in_(OPEN))
            .values(status="failed", last_error="the contact was forgotten before it was sent")
            .execution_options(synchronize_session=False)
        )
        result = await session.execute(
            update(Delivery)
            .where(Delivery.recipient == address)
            .values(recipient=f"forgotten:{digest[:40]}", context="{}")
            .execution_options(synchronize_session=False)
        )
        scrubbed += result.rowcount  # type: ignore[attr-defined]
    await session.execute(delete(ContactTopic).where(ContactTopic.contact_id == contact.id))
    await session.delete(contact)
    return scrubbed


# The ledger


def _row(
    cause_id: str, planned: PlannedDelivery, now: datetime, broadcast_id: str | None
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "cause_id": cause_id,
        "recipient": planned.recipient,
        "channel": planned.channel,
        "template": planned.template,
        "context": json.dumps(planned.context),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "urgent": planned.urgent,
        "broadcast_id": broadcast_id,
        "contact_id": planned.contact_id,
        "attempts_before_resend": 0,
    }


async def plan_delivery(session: AsyncSession, cause_id: str, planned: PlannedDelivery) -> bool:
    """Add the ledger row unless this cause already has one for this recipient and channel."""
    existing = await session.scalar(
        select(Delivery.id).where(
            Delivery.cause_id == cause_id,
            Delivery.recipient == planned.recipient,
            Delivery.channel == planned.channel,
        )
    )
    if existing is not None or await is_forgotten(session, planned.recipient):
        return False
    await session.execute(insert(Delivery), [_row(cause_id, planned, datetime.now(UTC), None)])
    return True


async def plan_broadcast(
    session: AsyncSession, broadcast_id: str, planned: list[PlannedDelivery]
) -> None:
    """Every row of a new broadcast, in bulk (its id is new, so none can exist yet)."""
    now = datetime.now(UTC)
    rows = [_row(broadcast_id, item, now, broadcast_id) for item in planned]
    for first in range(0, len(rows), 2000):
        await session.execute(insert(Delivery), rows[first : first + 2000])


async def claim_due(
    session: AsyncSession, *, limit: int, lease: timedelta, now: datetime | None = None
) -> list[Delivery]:
    """Take up to ``limit`` due rows for sending until ``lease`` from now; others leave them be."""
    now = now or datetime.now(UTC)
    due = list(
        await session.scalars(
            select(Delivery.id)
            .where(Delivery.status.in_(OPEN), Delivery.next_attempt_at <= now)
            .order_by(Delivery.next_attempt_at, Delivery.created_at)
            .limit(limit)
        )
    )
    if not due:
        return []
    token = str(uuid.uuid4())
    await session.execute(
        update(Delivery)
        .where(Delivery.id.in_(due), Delivery.status.in_(OPEN), Delivery.next_attempt_at <= now)
        .values(claim=token, next_attempt_at=now + lease)
        .execution_options(synchronize_session=False)
    )
    return list(await session.scalars(select(Delivery).where(Delivery.claim == token)))


async def owed_now(session: AsyncSession) -> int:
    """Deliveries due or being sent now: the sender's backlog (deferred ones wait their time)."""
    now = datetime.now(UTC)
    return (
        await session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.status.in_(OPEN),
                (Delivery.next_attempt_at <= now) | Delivery.claim.is_not(None),
            )
        )
        or 0
    )


async def count_deliveries(session: AsyncSession, status: str | None = None) -> int:
    query = select(func.count()).select_from(Delivery)
    if status:
        query = query.where(Delivery.status == status)
    return await session.scalar(query) or 0


async def broadcast_counts(session: AsyncSession, broadcast_id: str) -> dict[str, int]:
    rows = await session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.broadcast_id == broadcast_id)
        .group_by(Delivery.status)
    )
    counts = {status: 0 for status in ("pending", "deferred", "sent", "failed")}
    counts.update({status: count for status, count in rows})
    return counts
