"""The events store: events, bookings, scheduled reminders, and the read model of
memberships (built from subscriptions' facts).

Capacity is guarded twice: every transaction that changes an event's places
first locks the event's row (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's
``BEGIN IMMEDIATE`` already serialises writers), and the row's ``confirmed``
counter is held under its ``capacity`` by a CHECK constraint, so a bug in the
code fails the transaction instead of overbooking.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TypedDict

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    CompoundSelect,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kernel.store import UTCDateTime, upsert
from services.events.domain import erasure


class Base(DeclarativeBase):
    pass


class MembershipView(Base):
    """What events knows of a membership: enough to price a booking."""

    __tablename__ = "membership_view"

    membership_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36), index=True)
    member_name: Mapped[str] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(40))
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint("confirmed >= 0 AND confirmed <= capacity", name="ck_events_places"),
    )

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    programme: Mapped[str] = mapped_column(String(40), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    venue: Mapped[str | None] = mapped_column(String(300))
    online_url: Mapped[str | None] = mapped_column(String(500))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    capacity: Mapped[int] = mapped_column(Integer)
    confirmed: Mapped[int] = mapped_column(Integer, default=0)
    arrivals: Mapped[int] = mapped_column(Integer, default=0)
    member_price_minor: Mapped[int] = mapped_column(Integer)
    non_member_price_minor: Mapped[int] = mapped_column(Integer)
    booking_opens_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    booking_closes_at: Mapped[datetime] = mapped_column(UTCDateTime)
    places_per_organisation: Mapped[int | None] = mapped_column(Integer)
    waiting_list: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(12), default="draft")
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # When the retention period ran out and its bookers were redacted; the sweep skips it then.
    bookings_redacted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Booking(Base):
    __tablename__ = "bookings"
    __table_args__ = (
        Index("ux_bookings_arrival", "event_id", "arrival", unique=True),
        # One live booking per email per event, whatever the code above says.
        Index(
            "ux_bookings_live_email",
            "event_id",
            "email",
            unique=True,
            sqlite_where=text("status != 'cancelled'"),
            postgresql_where=text("status != 'cancelled'"),
        ),
        Index("ix_bookings_queue", "event_id", "status", "arrival"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    reference: Mapped[str] = mapped_column(String(20), unique=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"))
    arrival: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(20))
    sms: Mapped[bool] = mapped_column(Boolean, default=False)
    member_id: Mapped[str | None] = mapped_column(String(40))
    organisation_name: Mapped[str | None] = mapped_column(String(200))
    organisation_key: Mapped[str | None] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(12))
    price_minor: Mapped[int] = mapped_column(Integer)
    member_price: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_reason: Mapped[str | None] = mapped_column(String(20))
    attendance: Mapped[str | None] = mapped_column(String(10))
    attendance_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


@dataclass(slots=True)
class NewBooking:
    """A booking made in a batch, before its row is written in one statement with the
    others: it reads as a ``Booking`` does in facts and replies, without the ORM's
    bookkeeping per instance (a fifth of a booking's time in a rush)."""

    id: str
    reference: str
    event_id: str
    arrival: int
    status: str
    name: str
    email: str
    phone: str | None
    sms: bool
    member_id: str | None
    organisation_name: str | None
    organisation_key: str | None
    channel: str
    price_minor: int
    member_price: bool
    created_at: datetime
    confirmed_at: datetime | None
    cancelled_at: datetime | None = None
    cancelled_reason: str | None = None
    attendance: str | None = None
    attendance_at: datetime | None = None

    def row(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}


class Reminder(Base):
    """One reminder of one confirmed booking, for one schedule of its event."""

    __tablename__ = "reminders"
    __table_args__ = (
        Index("ux_reminders_slot", "booking_id", "hours_before", "event_sequence", unique=True),
        Index("ix_reminders_due", "status", "due_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    booking_id: Mapped[str] = mapped_column(ForeignKey("bookings.id"))
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"))
    hours_before: Mapped[int] = mapped_column(Integer)
    event_sequence: Mapped[int] = mapped_column(Integer)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending, sent, void
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# Memberships


# Ids asked for in one IN (...): well inside SQLite's and PostgreSQL's limits on parameters.
_IN_CHUNK = 1_000


class MembershipRow(TypedDict):
    """A row of the view of memberships, as it is read and written in bulk."""

    membership_id: str
    member_id: str
    member_name: str
    tier: str
    starts_on: date
    ends_on: date | None


async def membership_rows(
    session: AsyncSession, membership_ids: Iterable[str]
) -> dict[str, MembershipRow]:
    """The view's rows for ``membership_ids``, by id, in one query; unknown ids are left out."""
    wanted = list(set(membership_ids))
    table = MembershipView.__table__
    found: dict[str, MembershipRow] = {}
    for first in range(0, len(wanted), _IN_CHUNK):
        result = await session.execute(
            select(table).where(table.c.membership_id.in_(wanted[first : first + _IN_CHUNK]))
        )
        for row in result.mappings():
            found[row["membership_id"]] = MembershipRow(**row)  # type: ignore[typeddict-item]
    return found


async def record_memberships(session: AsyncSession, rows: list[MembershipRow]) -> None:
    """Add the memberships to the view, or bring them up to date: one statement for all."""
    await upsert(session, MembershipView.__table__, rows, key=["membership_id"])


async def memberships(session: AsyncSession) -> list[MembershipView]:
    return list(await session.scalars(select(MembershipView).order_by(MembershipView.member_name)))


async def members_named(session: AsyncSession, names: Iterable[str]) -> dict[str, str]:
    """The member id of each organisation known by one of ``names`` (any case), by the
    name stripped and lower-cased; names no member goes by are left out."""
    wanted = {name.strip().lower() for name in names}
    if not wanted:
        return {}
    rows = await session.execute(
        select(func.lower(MembershipView.member_name), MembershipView.member_id)
        .where(func.lower(MembershipView.member_name).in_(wanted))
        .order_by(MembershipView.membership_id)
    )
    found: dict[str, str] = {}
    for name, member_id in rows:
        found.setdefault(name, member_id)
    return found


async def memberships_of_members(
    session: AsyncSession, member_ids: Iterable[str]
) -> dict[str, list[MembershipView]]:
    """Each of ``member_ids``' memberships, in one query; members without any are left out."""
    wanted = set(member_ids)
    if not wanted:
        return {}
    found: dict[str, list[MembershipView]] = {}
    for membership in await session.scalars(
        select(MembershipView)
        .where(MembershipView.member_id.in_(wanted))
        .order_by(MembershipView.membership_id)
    ):
        found.setdefault(membership.member_id, []).append(membership)
    return found


# Events


async def event_for_update(session: AsyncSession, event_id: str) -> Event | None:
    """The event, its row locked until the transaction ends (PostgreSQL; SQLite holds the
    database's write lock from BEGIN IMMEDIATE)."""
    return await session.scalar(
        select(Event)
        .where(Event.id == event_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


_events = Event.__table__
# Built once: a statement costs more to build than to run, and these run in every batch.
_LOCK_EVENTS = (
    select(_events)
    .where(_events.c.id.in_(bindparam("event_ids", expanding=True)))
    .order_by(_events.c.id)
    .with_for_update()
)


async def events_for_update(session: AsyncSession, event_ids: Iterable[str]) -> dict[str, Event]:
    """The events by id, their rows locked until the transaction ends, taken in id order
    so that two transactions locking several never wait for each other in a circle.

    The events are read, not loaded into the session: changes to them are written with
    ``count_places``."""
    wanted = sorted(set(event_ids))
    if not wanted:
        return {}
    rows = await session.execute(_LOCK_EVENTS, {"event_ids": wanted})
    return {row.id: Event(**row._mapping) for row in rows}


async def event(session: AsyncSession, event_id: str) -> Event | None:
    return await session.get(Event, event_id)


async def events(
    session: AsyncSession, *, status: str | None = None, programme: str | None = None
) -> list[Event]:
    query = select(Event).order_by(Event.starts_at, Event.id)
    if status:
        query = query.where(Event.status == status)
    if programme:
        query = query.where(Event.programme == programme)
    return list(await session.scalars(query))


async def upcoming_published(session: AsyncSession, now: datetime) -> list[Event]:
    return list(
        await session.scalars(
            select(Event)
            .where(Event.status == "published", Event.ends_at > now)
            .order_by(Event.starts_at, Event.id)
        )
    )


async def ended_published(session: AsyncSession, now: datetime) -> list[str]:
    return list(
        await session.scalars(
            select(Event.id).where(Event.status == "published", Event.ends_at <= now)
        )
    )


# Bookings


async def booking_by_reference(session: AsyncSession, reference: str) -> Booking | None:
    return await session.scalar(select(Booking).where(Booking.reference == reference.upper()))


@dataclass(frozen=True)
class Queues:
    """What a batch of new bookings for one event needs to know of its bookings."""

    booked_emails: set[str]  # of the emails asked about, those holding a live booking
    organisation_places: dict[str, int]  # live places of each organisation asked about
    waiting: int


def _queue_statement(*, organisations: bool) -> CompoundSelect:
    event_id = bindparam("event_id")
    live = and_(Booking.event_id == event_id, Booking.status != "cancelled")
    parts = [
        select(literal("waiting"), literal(""), func.count()).where(
            Booking.event_id == event_id, Booking.status == "waitlisted"
        ),
        select(literal("email"), Booking.email, literal(1)).where(
            live, Booking.email.in_(bindparam("emails", expanding=True))
        ),
    ]
    if organisations:
        parts.append(
            select(literal("organisation"), Booking.organisation_key, func.count())
            .where(live, Booking.organisation_key.in_(bindparam("keys", expanding=True)))
            .group_by(Booking.organisation_key)
        )
    return union_all(*parts)


_QUEUE = {False: _queue_statement(organisations=False), True: _queue_statement(organisations=True)}


async def queues_for(
    session: AsyncSession, event_id: str, *, emails: set[str], organisation_keys: set[str]
) -> Queues:
    """What new bookings for the event need to know of its bookings, in one statement:
    which of ``emails`` hold a live one, the live places of each of
    ``organisation_keys``, and the waiting list's length.

    Call it after ``events_for_update``, in a statement of its own: on PostgreSQL (READ
    COMMITTED) each statement sees what was committed when it began, so counts read in
    the locking statement itself could miss the bookings that the previous lock holder
    just committed.
    """
    parameters: dict[str, object] = {"event_id": event_id, "emails": sorted(emails)}
    if organisation_keys:
        parameters["keys"] = sorted(organisation_keys)
    booked: set[str] = set()
    places: dict[str, int] = {}
    waiting = 0
    for kind, key, count in await session.execute(_QUEUE[bool(organisation_keys)], parameters):
        if kind == "waiting":
            waiting = count
        elif kind == "email":
            booked.add(key)
        else:
            places[key] = count
    return Queues(booked_emails=booked, organisation_places=places, waiting=waiting)


_COUNT_PLACES = (
    update(_events)
    .where(_events.c.id == bindparam("event_id"))
    .values(
        arrivals=_events.c.arrivals + bindparam("arrived"),
        confirmed=_events.c.confirmed + bindparam("newly_confirmed"),
    )
)


async def count_places(
    session: AsyncSession, event_id: str, *, arrivals: int, confirmed: int
) -> None:
    """Count a batch's new bookings into the event's row: ``arrivals`` more arrived, of
    which ``confirmed`` took a place (the CHECK on places still applies)."""
    await session.execute(
        _COUNT_PLACES, {"event_id": event_id, "arrived": arrivals, "newly_confirmed": confirmed}
    )


async def add_bookings(session: AsyncSession, bookings: list[NewBooking]) -> None:
    """Insert many new bookings in one statement."""
    if bookings:
        await session.execute(insert(Booking.__table__), [booking.row() for booking in bookings])


async def add_reminders(session: AsyncSession, rows: list[dict[str, object]]) -> None:
    """Insert many reminders in one statement (column values by name)."""
    if rows:
        await session.execute(insert(Reminder.__table__), rows)


async def waiting(session: AsyncSession, event_id: str, limit: int | None = None) -> list[Booking]:
    """The waiting list, head first."""
    query = (
        select(Booking)
        .where(Booking.event_id == event_id, Booking.status == "waitlisted")
        .order_by(Booking.arrival)
    )
    if limit is not None:
        query = query.limit(limit)
    return list(await session.scalars(query))


async def waiting_count(session: AsyncSession, event_id: str) -> int:
    return (
        await session.scalar(
            select(func.count()).where(Booking.event_id == event_id, Booking.status == "waitlisted")
        )
        or 0
    )


async def waiting_counts(session: AsyncSession, event_ids: list[str]) -> dict[str, int]:
    """Each event's waiting list length, in one grouped query (events without one: absent)."""
    if not event_ids:
        return {}
    rows = await session.execute(
        select(Booking.event_id, func.count())
        .where(Booking.event_id.in_(event_ids), Booking.status == "waitlisted")
        .group_by(Booking.event_id)
    )
    return {event_id: count for event_id, count in rows.all()}


async def waiting_position(session: AsyncSession, booking: Booking) -> int | None:
    if booking.status != "waitlisted":
        return None
    ahead = await session.scalar(
        select(func.count()).where(
            Booking.event_id == booking.event_id,
            Booking.status == "waitlisted",
            Booking.arrival < booking.arrival,
        )
    )
    return (ahead or 0) + 1


async def bookings_of(
    session: AsyncSession, event_id: str, statuses: tuple[str, ...] | None = None
) -> list[Booking]:
    query = select(Booking).where(Booking.event_id == event_id).order_by(Booking.arrival)
    if statuses:
        query = query.where(Booking.status.in_(statuses))
    return list(await session.scalars(query))


# Reminders


async def void_pending_reminders(
    session: AsyncSession, *, event_id: str | None = None, booking_id: str | None = None
) -> int:
    query = update(Reminder).where(Reminder.status == "pending")
    if event_id is not None:
        query = query.where(Reminder.event_id == event_id)
    if booking_id is not None:
        query = query.where(Reminder.booking_id == booking_id)
    result = await session.execute(query.values(status="void"))
    return result.rowcount or 0  # type: ignore[attr-defined]


async def due_reminders(session: AsyncSession, now: datetime, limit: int) -> list[Reminder]:
    return list(
        await session.scalars(
            select(Reminder)
            .where(Reminder.status == "pending", Reminder.due_at <= now)
            .order_by(Reminder.due_at, Reminder.id)
            .limit(limit)
        )
    )


async def claim_reminder(session: AsyncSession, reminder_id: str, now: datetime) -> bool:
    """Mark one pending reminder sent; False if another replica (or a void) got there first."""
    result = await session.execute(
        update(Reminder)
        .where(Reminder.id == reminder_id, Reminder.status == "pending")
        .values(status="sent", sent_at=now)
    )
    return (result.rowcount or 0) == 1  # type: ignore[attr-defined]


async def reminders_of(session: AsyncSession, event_id: str) -> list[Reminder]:
    return list(
        await session.scalars(
            select(Reminder).where(Reminder.event_id == event_id).order_by(Reminder.due_at)
        )
    )


# People: erasure and subject access


async def bookings_of_person(
    session: AsyncSession, *, email: str, phone: str | None = None
) -> list[tuple[Booking, Event]]:
    """Every booking made with ``email`` (given normalised; matched in any case) or, when
    given, with ``phone``, each with its event, oldest first."""
    match = func.lower(Booking.email) == email
    if phone:
        match = or_(match, Booking.phone == phone)
    rows = await session.execute(
        select(Booking, Event)
        .join(Event, Booking.event_id == Event.id)
        .where(match)
        .order_by(Booking.created_at, Booking.id)
    )
    return [(booking, event) for booking, event in rows]


async def reminders_of_bookings(session: AsyncSession, booking_ids: list[str]) -> list[Reminder]:
    if not booking_ids:
        return []
    return list(
        await session.scalars(
            select(Reminder)
            .where(Reminder.booking_id.in_(booking_ids))
            .order_by(Reminder.due_at, Reminder.id)
        )
    )


async def redact_bookings(session: AsyncSession, bookings: Iterable[Booking]) -> int:
    """Put the erased stand-ins in place of each booking's booker and void its pending
    reminders; returns how many were not redacted already.

    Erasure on request and the retention sweep both come here, so that a booking
    redacted either way reads the same, is never reminded, and is counted as before.
    """
    redacted = [booking for booking in bookings if not erasure.is_redacted(booking.email)]
    for booking in redacted:
        for column, value in erasure.redacted_booker(booking.id).columns().items():
            setattr(booking, column, value)
    if redacted:
        await session.execute(
            update(Reminder)
            .where(
                Reminder.booking_id.in_([booking.id for booking in redacted]),
                Reminder.status == "pending",
            )
            .values(status="void")
        )
    await session.flush()
    return len(redacted)


async def events_past_retention(session: AsyncSession, cutoff: datetime) -> list[str]:
    """The events that ended before ``cutoff`` and whose bookings are not yet redacted."""
    return list(
        await session.scalars(
            select(Event.id)
            .where(Event.ends_at < cutoff, Event.bookings_redacted_at.is_(None))
            .order_by(Event.ends_at, Event.id)
        )
    )
