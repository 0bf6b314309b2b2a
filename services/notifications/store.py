"""The notifications store: contacts, their consents and topics, broadcasts and the delivery ledger."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, selectinload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from contracts.envelope import new_id
from contracts.personal import is_erased_email, normalised_email
from kernel.store import dialect_insert
from services.notifications import directory, domain, wakeup
from services.notifications.domain import PlannedDelivery, Reachable

SETTLED = ("sent", "failed")
OPEN = ("pending", "deferred")
# Keys asked for in one IN (...): well inside SQLite's and PostgreSQL's limits on parameters.
_IN_CHUNK = 1_000
_ENTRY_FIELDS = fields(directory.Entry)


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
    # The person's own choices; None where they made none (see ``reachable``).
    email_consent: Mapped[bool | None] = mapped_column(Boolean)
    sms_consent: Mapped[bool | None] = mapped_column(Boolean)
    # When their own record was made; None for records older than the column.
    added_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DirectoryEntry(Base):
    """The contact directory as learnt from facts (see ``directory``): a read model,
    dropped and rebuilt from the streams by `vestry rebuild notifications`."""

    __tablename__ = "directory"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    contact_id: Mapped[str] = mapped_column(String(36), index=True)
    sources: Mapped[str] = mapped_column(String(60))
    name: Mapped[str | None] = mapped_column(String(200))
    name_stamp: Mapped[str] = mapped_column(String(80))
    organisation: Mapped[str | None] = mapped_column(String(200))
    organisation_stamp: Mapped[str] = mapped_column(String(80))
    mobile: Mapped[str | None] = mapped_column(String(20))
    mobile_stamp: Mapped[str] = mapped_column(String(80))
    sms_opt_in: Mapped[bool] = mapped_column(Boolean)
    first_seen: Mapped[str] = mapped_column(String(80))
    last_seen: Mapped[str] = mapped_column(String(80))

    def entry(self) -> directory.Entry:
        return directory.Entry(**{f.name: getattr(self, f.name) for f in fields(directory.Entry)})


class ContactTopic(Base):
    __tablename__ = "contact_topics"

    contact_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    topic: Mapped[str] = mapped_column(String(60), primary_key=True, index=True)


class Forgotten(Base):
    """Addresses of people who were forgotten, as keyed digests (``domain.forgotten_digest``):
    never learnt or planned for again."""

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
    # What every recipient's message is rendered from (``FanOut.shared``), as JSON, kept
    # here once rather than in each of thousands of ledger rows. None for broadcasts
    # older than the column, whose rows each carry all of it.
    context: Mapped[str | None] = mapped_column(Text)

    @property
    def shared_context(self) -> dict[str, Any]:
        # Parsed once per loaded broadcast: the sender renders many rows from one.
        parsed = self.__dict__.get("_shared_context")
        if parsed is None:
            parsed = self.__dict__["_shared_context"] = dict(json.loads(self.context or "{}"))
        return dict(parsed)


class SendPace(Base):
    """When the next send to a provider may start, shared by every replica (migration
    0009): each replica takes its sends' starting moments from here, so together they
    keep to the provider's rate (``sender.SharedPace``)."""

    __tablename__ = "send_pace"

    provider: Mapped[str] = mapped_column(String(40), primary_key=True)
    next_start: Mapped[float] = mapped_column(Float)  # seconds since the epoch


class Delivery(Base):
    """The ledger: one row per cause × recipient × channel, created once and sent once."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("cause_id", "recipient", "channel", name="uq_delivery_once"),
        Index("ix_deliveries_broadcast_status", "broadcast_id", "status"),
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
    broadcast_id: Mapped[str | None] = mapped_column(String(36))
    contact_id: Mapped[str | None] = mapped_column(String(36))
    claim: Mapped[str | None] = mapped_column(String(36))
    attempts_before_resend: Mapped[int] = mapped_column(Integer, default=0)
    # Loaded only where a row is rendered (``claim_due``); anywhere else it is a bug
    # to reach for it, and it would load a body of up to megabytes per broadcast.
    broadcast: Mapped[Broadcast | None] = relationship(
        primaryjoin="foreign(Delivery.broadcast_id) == Broadcast.id", lazy="raise", viewonly=True
    )

    @property
    def own_context(self) -> dict[str, Any]:
        """What this row alone holds to render from (all of it, but for a broadcast's)."""
        return dict(json.loads(self.context))

    @property
    def template_context(self) -> dict[str, Any]:
        """What the message is rendered from: its broadcast's context, then its own."""
        broadcast = self.broadcast if self.broadcast_id else None
        if broadcast is None:
            return self.own_context
        return domain.broadcast_context(broadcast.shared_context, self.own_context)


# Contacts


async def contact_by_email(session: AsyncSession, email: str) -> Contact | None:
    return await session.scalar(select(Contact).where(Contact.email == email.strip().lower()))


@dataclass(frozen=True)
class Known:
    """A person this service knows: their own record, what facts said of them, or both."""

    contact: Contact | None
    entry: DirectoryEntry | None

    @property
    def reachable(self) -> Reachable:
        return reachable(self.contact, self.entry)

    @property
    def addresses(self) -> list[str]:
        """Every address they have here, for the ledger."""
        found = [self.reachable.email]
        for record in (self.contact, self.entry):
            if record is not None and record.mobile and record.mobile not in found:
                found.append(record.mobile)
        return [address for address in found if address]


async def find_person(session: AsyncSession, ref: str) -> Known | None:
    """A person by contact id or email."""
    ref = ref.strip()
    contact = await session.get(Contact, ref) or await contact_by_email(session, ref)
    entry = await session.get(DirectoryEntry, contact.email if contact else ref.lower())
    if contact is None and entry is None:
        entry = await session.scalar(select(DirectoryEntry).where(DirectoryEntry.contact_id == ref))
        contact = await contact_by_email(session, entry.email) if entry else None
    if contact is None and entry is None:
        return None
    return Known(contact, entry)


async def own_record(session: AsyncSession, email: str, *, source: str) -> Contact:
    """The contact row that keeps a person's own choices, made when they first make one."""
    email = email.strip().lower()
    contact = await contact_by_email(session, email)
    if contact is None:
        contact = Contact(
            id=directory.contact_id_for(email),
            email=email,
            source=source,
            added_at=datetime.now(UTC),
        )
        session.add(contact)
        await session.flush()
    return contact


def forgotten_digest(address: str) -> str:
    """``address`` as the forgotten table keeps it, under this service's contact-id key."""
    return domain.forgotten_digest(address, directory.contact_id_key())


async def is_forgotten(session: AsyncSession, address: str) -> bool:
    return await session.get(Forgotten, forgotten_digest(address)) is not None


async def learn(session: AsyncSession, sightings: Iterable[directory.Sighting]) -> None:
    """Take in, in order, what facts say of people, unless they were forgotten.

    A fact read after its person was erased names an erased stand-in: there is
    nobody to learn. A mobile that was forgotten with someone is not learnt back
    from another person's fact either. However many sightings, it reads the
    forgotten and the directory once each and writes each person's row once; a
    row already there is locked first, so that two learners of one person take
    turns (PostgreSQL; on SQLite the transaction holds the write lock).
    """
    wanted = [seen for seen in sightings if not is_erased_email(seen.email)]
    if not wanted:
        return
    emails = {normalised_email(seen.email) for seen in wanted}
    forgotten = await forgotten_among(
        session, emails | {seen.mobile for seen in wanted if seen.mobile}
    )
    known = await _directory_entries(session, emails - forgotten)
    entries: dict[str, directory.Entry] = dict(known)
    for seen in wanted:
        email = normalised_email(seen.email)
        if email in forgotten:
            continue
        if seen.mobile and seen.mobile in forgotten:
            seen = replace(seen, mobile=None, sms_opt_in=False)
        entries[email] = directory.learn(entries.get(email), seen)
    changed = {email: entry for email, entry in entries.items() if known.get(email) != entry}
    await _write_entries(session, changed, new=changed.keys() - known.keys())


async def forgotten_among(session: AsyncSession, addresses: Iterable[str]) -> set[str]:
    """Which of ``addresses`` (emails or mobiles) were forgotten, in one query."""
    digests = {address: forgotten_digest(address) for address in addresses}
    found: set[str] = set()
    wanted = sorted(set(digests.values()))
    for first in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[first : first + _IN_CHUNK]
        found.update(
            await session.scalars(select(Forgotten.digest).where(Forgotten.digest.in_(chunk)))
        )
    return {address for address, digest in digests.items() if digest in found}


async def _directory_entries(
    session: AsyncSession, emails: Iterable[str]
) -> dict[str, directory.Entry]:
    """The directory's entries for ``emails``, each row locked until the transaction ends."""
    table = DirectoryEntry.__table__
    wanted = sorted(set(emails))
    found: dict[str, directory.Entry] = {}
    for first in range(0, len(wanted), _IN_CHUNK):
        rows = await session.execute(
            select(table)
            .where(table.c.email.in_(wanted[first : first + _IN_CHUNK]))
            .with_for_update()
        )
        for row in rows.mappings():
            found[row["email"]] = directory.Entry(**{f.name: row[f.name] for f in _ENTRY_FIELDS})
    return found


async def _write_entries(
    session: AsyncSession, entries: dict[str, directory.Entry], *, new: Iterable[str]
) -> None:
    """Insert the ``new`` entries and update the rest: two statements at most.

    Rows of the directory this session has already loaded are given the same values,
    so that what is read back in the same transaction is what was written.
    """
    new = set(new)
    table = DirectoryEntry.__table__
    rows = {
        email: {f.name: getattr(entry, f.name) for f in _ENTRY_FIELDS}
        for email, entry in entries.items()
    }
    inserts = [row for email, row in rows.items() if email in new]
    updates = [
        {"key": email, **{name: value for name, value in row.items() if name != "email"}}
        for email, row in rows.items()
        if email not in new
    ]
    if inserts:
        await session.execute(insert(table), inserts)
    if updates:
        await session.execute(update(table).where(table.c.email == bindparam("key")), updates)
    loaded = session.sync_session.identity_map
    for email, values in rows.items():
        row = loaded.get(identity_key(DirectoryEntry, email))
        if row is not None:
            for name, value in values.items():
                set_committed_value(row, name, value)


async def person(session: AsyncSession, email: str) -> Reachable | None:
    """Where and how a person can be reached: the directory and their own choices together.

    None for an erased stand-in or a forgotten address: nobody to write to.
    """
    if is_erased_email(email):
        return None
    email = normalised_email(email)
    if await is_forgotten(session, email):
        return None
    contact = await contact_by_email(session, email)
    entry = await session.get(DirectoryEntry, email)
    if contact is None and entry is None:
        return None
    return reachable(contact, entry)


async def topics_of(session: AsyncSession, contact_id: str) -> list[str]:
    return sorted(
        await session.scalars(
            select(ContactTopic.topic).where(ContactTopic.contact_id == contact_id)
        )
    )


def reachable(
    contact: Contact | None, entry: DirectoryEntry | None, topics: Iterable[str] = ()
) -> Reachable:
    """A person as the rules see them: their own record first, then what facts said of them.

    A consent they gave or withdrew themselves overrides a booking form's opt-in;
    without one, email is on and SMS is what they ticked when booking.
    """
    learnt = entry.entry() if entry else None
    if contact is None:
        if learnt is None:
            raise ValueError("a person is in the directory, has a contact, or both")
        contact_id, email, email_choice, sms_choice = learnt.contact_id, learnt.email, None, None
    else:
        contact_id, email = contact.id, contact.email
        email_choice, sms_choice = contact.email_consent, contact.sms_consent
    mobile = (contact and contact.mobile) or (learnt and learnt.mobile) or None
    opted_in = bool(learnt and learnt.sms_opt_in)
    return Reachable(
        contact_id=contact_id,
        email=email,
        mobile=mobile,
        email_consent=email_choice is not False,
        sms_consent=bool(mobile) and (opted_in if sms_choice is None else sms_choice),
        topics=frozenset(topics),
        name=(contact and contact.name) or (learnt and learnt.name) or None,
    )


async def subscribers(session: AsyncSession, topic: str) -> list[Reachable]:
    rows = await session.execute(
        select(Contact, DirectoryEntry)
        .join(ContactTopic, ContactTopic.contact_id == Contact.id)
        .outerjoin(DirectoryEntry, DirectoryEntry.email == Contact.email)
        .where(ContactTopic.topic == topic)
        .order_by(Contact.email)
    )
    return [reachable(contact, entry, {topic}) for contact, entry in rows]


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


async def open_broadcasts_of(session: AsyncSession, addresses: Iterable[str]) -> list[str]:
    """Broadcasts with a row still to send to any of ``addresses``."""
    found = await session.scalars(
        select(Delivery.broadcast_id)
        .where(
            _to_any(addresses),
            Delivery.status.in_(OPEN),
            Delivery.broadcast_id.is_not(None),
        )
        .distinct()
    )
    return [broadcast_id for broadcast_id in found if broadcast_id]


@dataclass(frozen=True)
class Person:
    """Everything this store holds on one person: the records (own and learnt) their
    email or the phone a request gives names."""

    asked: domain.PersonAsked
    contacts: list[Contact]
    entries: list[DirectoryEntry]

    @property
    def known_as(self) -> set[str]:
        """The emails their records are kept under: one person, however many records."""
        return {record.email for record in (*self.contacts, *self.entries)}

    @property
    def phones(self) -> set[str]:
        """The phone asked about and every mobile on their records."""
        mobiles = {record.mobile for record in (*self.contacts, *self.entries) if record.mobile}
        return set(self.asked.phones) | mobiles

    @property
    def addresses(self) -> set[str]:
        """Every address of theirs a ledger row may name: each email and each phone."""
        return {self.asked.email} | self.known_as | self.phones


async def person_by_email(session: AsyncSession, email: str, phone: str | None = None) -> Person:
    """The person with this email (in any case), with every record the phone names."""
    asked = domain.person_asked(email, phone)
    phones = sorted(asked.phones)
    own = select(Contact).where((Contact.email == asked.email) | Contact.mobile.in_(phones))
    learnt = select(DirectoryEntry).where(
        (DirectoryEntry.email == asked.email) | DirectoryEntry.mobile.in_(phones)
    )
    return Person(
        asked,
        list(await session.scalars(own.order_by(Contact.email))),
        list(await session.scalars(learnt.order_by(DirectoryEntry.email))),
    )


def _to_any(addresses: Iterable[str]) -> Any:
    """Ledger rows naming any of ``addresses``: an email in any case, a phone as written."""
    wanted = sorted({address.strip().lower() for address in addresses if address})
    return func.lower(Delivery.recipient).in_(wanted)


async def deliveries_to(
    session: AsyncSession, addresses: Iterable[str], *, for_update: bool = False
) -> list[Delivery]:
    """Every ledger row naming any of ``addresses``, oldest first; ``for_update`` locks
    them (PostgreSQL), so a sender recording an outcome meanwhile waits its turn."""
    query = select(Delivery).where(_to_any(addresses)).order_by(Delivery.created_at, Delivery.id)
    if for_update:
        query = query.with_for_update()
    return list(await session.scalars(query))


@dataclass(frozen=True)
class Erased:
    """What forgetting a person took away: how many addresses they had records under
    (their own, what facts taught, or both: one contact) and how many ledger rows
    named them."""

    contacts: int
    deliveries: int


async def erase_person(session: AsyncSession, person: Person) -> Erased:
    """Forget ``person``: contacts, consents, topics, what facts taught the directory, and
    whom their ledger rows went to and what those said; keep keyed digests of every
    address of theirs so that nothing is learnt or planned for them again.

    Idempotent: a person already forgotten erases nothing.
    """
    now = datetime.now(UTC)
    addresses = person.addresses
    for address in sorted(addresses):
        digest = forgotten_digest(address)
        if await session.get(Forgotten, digest) is None:
            session.add(Forgotten(digest=digest, forgotten_at=now))
    scrubbed = 0
    for row in await deliveries_to(session, addresses, for_update=True):
        changes = domain.forgotten_delivery(
            still_open=row.status in OPEN,
            last_error=row.last_error,
            addresses=addresses,
            marker=domain.forgotten_recipient(forgotten_digest(row.recipient)),
        )
        for field, value in changes.items():
            setattr(row, field, value)
        scrubbed += 1
    for contact in person.contacts:
        await session.execute(delete(ContactTopic).where(ContactTopic.contact_id == contact.id))
        await session.delete(contact)
    for entry in person.entries:
        await session.delete(entry)
    await session.flush()
    # A number of theirs on someone else's record (a shared duty phone) is taken off it;
    # the record itself names someone else.
    phones = sorted(person.phones)
    if phones:
        await session.execute(
            update(Contact)
            .where(Contact.mobile.in_(phones))
            .values(mobile=None, sms_consent=None)
            .execution_options(synchronize_session=False)
        )
        await session.execute(
            update(DirectoryEntry)
            .where(DirectoryEntry.mobile.in_(phones))
            .values(mobile=None, sms_opt_in=False)
            .execution_options(synchronize_session=False)
        )
    return Erased(contacts=len(person.known_as), deliveries=scrubbed)


# The ledger


def _row(
    cause_id: str, planned: PlannedDelivery, now: datetime, broadcast_id: str | None
) -> dict[str, Any]:
    return {
        "id": new_id(),
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
    """Add the ledger row unless this cause already has one for this recipient and channel.

    Nothing is planned for nobody: no address, an erased stand-in or a forgotten one.
    """
    if not planned.recipient or is_erased_email(planned.recipient):
        return False
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
    wakeup.on_commit(session)
    return True


async def add_broadcast(session: AsyncSession, values: dict[str, Any]) -> Broadcast | None:
    """Record a new broadcast, unless its id is taken; returns it, or None if taken.

    Its id comes from the command's id, so a command sent twice (a client retrying)
    reaching two replicas at once makes both try: the insert of the second waits for
    the first's transaction and then inserts nothing, so the broadcast is planned once.
    """
    added = await session.execute(
        dialect_insert(session)(Broadcast)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["id"])
    )
    if not added.rowcount:  # type: ignore[attr-defined]
        return None
    return await session.get(Broadcast, values["id"])


async def broadcast(session: AsyncSession, broadcast_id: str) -> Broadcast | None:
    """A broadcast as committed now, not as this session may have read it before."""
    return await session.get(Broadcast, broadcast_id, populate_existing=True)


async def plan_broadcast(
    session: AsyncSession, broadcast_id: str, planned: list[PlannedDelivery]
) -> None:
    """Every row of a new broadcast, in bulk (its id is new, so none can exist yet).

    The rows are made a chunk at a time: all of a broadcast to tens of thousands at
    once would hold tens of megabytes for a moment, and the process keeps the memory."""
    now = datetime.now(UTC)
    for first in range(0, len(planned), 2000):
        chunk = planned[first : first + 2000]
        await session.execute(
            insert(Delivery), [_row(broadcast_id, item, now, broadcast_id) for item in chunk]
        )
    if planned:
        wakeup.on_commit(session)


async def delivery_for_update(session: AsyncSession, delivery_id: str) -> Delivery | None:
    """A ledger row, locked until the transaction ends and read afresh: two resends of one
    failed row, on two replicas, then see it one after the other, and the second finds
    it no longer failed."""
    return await session.scalar(
        select(Delivery)
        .where(Delivery.id == delivery_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def claim_due(
    session: AsyncSession, *, limit: int, lease: timedelta, now: datetime | None = None
) -> list[Delivery]:
    """Take up to ``limit`` due rows for sending until ``lease`` from now; others leave them be.

    On PostgreSQL the rows another replica is claiming at this moment are skipped
    (SKIP LOCKED), not waited for: replicas claiming at once take different rows
    rather than all but one coming away empty."""
    now = now or datetime.now(UTC)
    due = list(
        await session.scalars(
            select(Delivery.id)
            .where(Delivery.status.in_(OPEN), Delivery.next_attempt_at <= now)
            .order_by(Delivery.next_attempt_at, Delivery.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not due:
        return []
    token = new_id()
    await session.execute(
        update(Delivery)
        .where(Delivery.id.in_(due), Delivery.status.in_(OPEN), Delivery.next_attempt_at <= now)
        .values(claim=token, next_attempt_at=now + lease)
        .execution_options(synchronize_session=False)
    )
    return list(
        await session.scalars(
            select(Delivery)
            .where(Delivery.claim == token)
            .options(selectinload(Delivery.broadcast))  # each broadcast's body loaded once
        )
    )


@dataclass
class Settling:
    """A claimed row as its outcome is recorded: the columns an outcome reads and changes,
    read and written as plain values (``outcome_rows``, ``record_outcomes``), not as
    ORM objects: a batch of thousands is recorded in a few statements."""

    id: str
    cause_id: str
    recipient: str
    channel: str
    template: str
    broadcast_id: str | None
    attempts_before_resend: int
    status: str
    claim: str | None
    attempts: int
    next_attempt_at: datetime
    sent_at: datetime | None
    provider_id: str | None
    segments: int | None
    last_error: str | None


_SETTLING = [Delivery.__table__.c[f.name] for f in fields(Settling)]
# What recording an outcome may change.
_CHANGED = (
    "status",
    "claim",
    "attempts",
    "next_attempt_at",
    "sent_at",
    "provider_id",
    "segments",
    "last_error",
)


async def outcome_rows(session: AsyncSession, ids: list[str]) -> list[Settling]:
    """The rows ``ids`` as they are now, locked until the transaction ends (PostgreSQL) so
    that an erasure or a resend meanwhile waits its turn, in one order for every caller."""
    rows = await session.execute(
        select(*_SETTLING)
        .where(Delivery.__table__.c.id.in_(ids))
        .order_by(Delivery.__table__.c.id)
        .with_for_update()
    )
    return [Settling(*row) for row in rows]


async def record_outcomes(session: AsyncSession, rows: list[Settling]) -> None:
    """Write back what each of ``rows`` became, in one statement."""
    if not rows:
        return
    table = Delivery.__table__
    await session.execute(
        update(table)
        .where(table.c.id == bindparam("row_id"))
        .values({name: bindparam(f"new_{name}") for name in _CHANGED}),
        [
            {"row_id": row.id, **{f"new_{name}": getattr(row, name) for name in _CHANGED}}
            for row in rows
        ],
    )


async def take_send_starts(
    session: AsyncSession,
    provider: str,
    count: int,
    spacing: float,
    clock: Callable[[], float],
) -> float:
    """Reserve ``count`` starting moments for sends to ``provider``, ``spacing`` seconds
    apart and none before now (``clock``: seconds since the epoch); returns the first.

    The provider's row is locked first (on SQLite the transaction holds the write lock
    already), then the clock read: replicas reserving at once take turns, each starting
    where the other left off, and a moment is never stale for having waited its turn."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    if dialect == "sqlite":
        # The transaction has held the store's write lock since it began (BEGIN
        # IMMEDIATE): the clock read now is read after any other replica's turn, and one
        # statement moves the row on.
        now, span = clock(), count * spacing
        pace = SendPace.__table__
        moved = await session.scalar(
            update(pace)
            .where(pace.c.provider == provider)
            .values(next_start=case((pace.c.next_start > now, pace.c.next_start), else_=now) + span)
            .returning(pace.c.next_start)
        )
        if moved is not None:
            return float(moved) - span
    held = (
        select(SendPace.next_start)
        .where(SendPace.provider == provider)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    next_start = await session.scalar(held)
    if next_start is None:  # the provider's first send
        await session.execute(
            dialect_insert(session)(SendPace)
            .values(provider=provider, next_start=0.0)
            .on_conflict_do_nothing(index_elements=["provider"])
        )
        next_start = await session.scalar(held)
        assert next_start is not None
    first = max(float(next_start), clock())
    await session.execute(
        update(SendPace)
        .where(SendPace.provider == provider)
        .values(next_start=first + count * spacing)
        .execution_options(synchronize_session=False)
    )
    return first


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


async def lock_broadcast(session: AsyncSession, broadcast_id: str) -> Broadcast | None:
    """The broadcast, read afresh and locked until the transaction ends (PostgreSQL; on
    SQLite the transaction holds the write lock already)."""
    return await session.scalar(
        select(Broadcast)
        .where(Broadcast.id == broadcast_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def broadcast_open(session: AsyncSession, broadcast_id: str) -> bool:
    """Whether any row of the broadcast is still to send: one row found is enough."""
    found = await session.scalar(
        select(Delivery.id)
        .where(Delivery.broadcast_id == broadcast_id, Delivery.status.in_(OPEN))
        .limit(1)
    )
    return found is not None


async def broadcast_counts(session: AsyncSession, broadcast_id: str) -> dict[str, int]:
    rows = await session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.broadcast_id == broadcast_id)
        .group_by(Delivery.status)
    )
    counts = {status: 0 for status in ("pending", "deferred", "sent", "failed")}
    counts.update({status: count for status, count in rows})
    return counts
