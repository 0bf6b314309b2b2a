"""The subscriptions store: members, memberships, invoices and their numbers, runs, payments."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    UniqueConstraint,
    func,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.subscriptions.domain import NewMembership

INVOICE_SERIES = "INV"
CREDIT_NOTE_SERIES = "CN"


class Base(DeclarativeBase):
    pass


class Member(Base):
    __tablename__ = "members"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    name_key: Mapped[str] = mapped_column(String(200), unique=True)
    reference: Mapped[str | None] = mapped_column(String(50))
    phone: Mapped[str | None] = mapped_column(String(30))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Membership(Base):
    __tablename__ = "memberships"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("members.id"))
    tier: Mapped[str] = mapped_column(String(40))
    billing_email: Mapped[str] = mapped_column(String(320))
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)


class TierChange(Base):
    __tablename__ = "tier_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    membership_id: Mapped[str] = mapped_column(ForeignKey("memberships.id"))
    old_tier: Mapped[str] = mapped_column(String(40))
    new_tier: Mapped[str] = mapped_column(String(40))
    effective_on: Mapped[date] = mapped_column(Date)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class NumberSeries(Base):
    """The last number given in each series; read and bumped in the issuing transaction."""

    __tablename__ = "number_series"

    series: Mapped[str] = mapped_column(String(10), primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer)


class InvoiceRun(Base):
    __tablename__ = "invoice_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, index=True)
    status: Mapped[str] = mapped_column(
        String(20)
    )  # queued, running, completed, interrupted, failed
    trigger: Mapped[str] = mapped_column(String(20))  # operator, yearly, monthly
    issued_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    owner: Mapped[str | None] = mapped_column(String(80))
    to_bill: Mapped[int] = mapped_column(Integer, default=0)
    already_billed: Mapped[int] = mapped_column(Integer, default=0)
    issued: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    net_pence: Mapped[int] = mapped_column(Integer, default=0)
    gross_pence: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(500))


class Invoice(Base):
    """An invoice or a credit note (``kind``); numbered in its series when issued."""

    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("series", "number", name="uq_invoices_series_number"),
        # One recurring invoice per membership per billing year, whatever runs.
        Index(
            "uq_invoices_recurring",
            "membership_id",
            "year",
            unique=True,
            sqlite_where=text("purpose = 'recurring'"),
            postgresql_where=text("purpose = 'recurring'"),
        ),
        # One invoice and one credit note per booking, however often the fact comes.
        Index(
            "uq_invoices_booking",
            "booking_id",
            "kind",
            unique=True,
            sqlite_where=text("booking_id IS NOT NULL"),
            postgresql_where=text("booking_id IS NOT NULL"),
        ),
        # Never more paid than billed, nor money on a void invoice, whatever a
        # handler read (migration 0003; triggers with the same names on SQLite).
        CheckConstraint(
            "paid_pence >= 0 AND (kind <> 'invoice' OR paid_pence <= gross_pence)",
            name="ck_invoices_paid_within_gross",
        ),
        CheckConstraint(
            "status <> 'void' OR paid_pence = 0", name="ck_invoices_nothing_paid_on_void"
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))  # invoice, credit_note
    series: Mapped[str] = mapped_column(String(10))
    number: Mapped[int] = mapped_column(Integer)
    purpose: Mapped[str] = mapped_column(String(20))
    year: Mapped[int] = mapped_column(Integer, index=True)
    membership_id: Mapped[str | None] = mapped_column(String(36))
    member_id: Mapped[str | None] = mapped_column(String(36), index=True)
    tier: Mapped[str | None] = mapped_column(String(40))
    billed_name: Mapped[str] = mapped_column(String(200))
    billing_email: Mapped[str] = mapped_column(String(320))
    issued_on: Mapped[date] = mapped_column(Date)
    due_on: Mapped[date | None] = mapped_column(Date)
    net_pence: Mapped[int] = mapped_column(Integer)
    vat_pence: Mapped[int] = mapped_column(Integer)
    gross_pence: Mapped[int] = mapped_column(Integer)
    paid_pence: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(12))  # issued, part_paid, paid, void
    credits_invoice_id: Mapped[str | None] = mapped_column(String(36))
    booking_id: Mapped[str | None] = mapped_column(String(64))
    refund_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    run_id: Mapped[str | None] = mapped_column(String(36))
    void_reason: Mapped[str | None] = mapped_column(String(200))

    @property
    def display_number(self) -> str:
        return display_number(self.series, self.number)


class InvoiceLine(Base):
    __tablename__ = "invoice_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(300))
    tier: Mapped[str | None] = mapped_column(String(40))
    months: Mapped[int] = mapped_column(Integer)
    net_pence: Mapped[int] = mapped_column(Integer)
    vat_basis_points: Mapped[int] = mapped_column(Integer)
    vat_pence: Mapped[int] = mapped_column(Integer)


class Payment(Base):
    __tablename__ = "payments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    amount_pence: Mapped[int] = mapped_column(Integer)
    received_on: Mapped[date] = mapped_column(Date)
    reference: Mapped[str | None] = mapped_column(String(100))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Reminder(Base):
    """One row per invoice and reminder stage sent: the primary key makes each stage once."""

    __tablename__ = "reminders"

    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), primary_key=True)
    stage: Mapped[str] = mapped_column(String(10), primary_key=True)
    sent_on: Mapped[date] = mapped_column(Date)


class AutomationMark(Base):
    """When the automation last started a run for a scheduled moment, so it starts it once."""

    __tablename__ = "automation_marks"

    moment: Mapped[str] = mapped_column(String(40), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(36))
    done: Mapped[bool] = mapped_column(Boolean, default=False)


def display_number(series: str, number: int) -> str:
    return f"{series}-{number:06d}"


def parse_number(text_: str) -> tuple[str, int] | None:
    """'INV-000012', 'inv-12', '12' → ('INV', 12); 'CN-3' → ('CN', 3); None if not a number."""
    raw = text_.strip().upper()
    series, _, digits = raw.rpartition("-")
    series = series or INVOICE_SERIES
    if not digits.isdigit() or series not in (INVOICE_SERIES, CREDIT_NOTE_SERIES):
        return None
    return series, int(digits)


def name_key(name: str) -> str:
    """Names are unique whatever their case and spacing."""
    return " ".join(name.casefold().split())


async def name_taken(session: AsyncSession, name: str) -> bool:
    return (
        await session.scalar(select(Member.id).where(Member.name_key == name_key(name))) is not None
    )


async def taken_names(session: AsyncSession, names: list[str]) -> set[str]:
    keys = {name_key(name) for name in names}
    found: set[str] = set()
    key_list = list(keys)
    for first in range(0, len(key_list), 500):
        found |= set(
            await session.scalars(
                select(Member.name_key).where(Member.name_key.in_(key_list[first : first + 500]))
            )
        )
    return found


async def add_membership(
    session: AsyncSession, new: NewMembership, reference: str | None, phone: str | None = None
) -> None:
    session.add(
        Member(
            id=new.member_id,
            name=new.name,
            name_key=name_key(new.name),
            reference=reference,
            phone=phone,
        )
    )
    session.add(
        Membership(
            id=new.membership_id,
            member_id=new.member_id,
            tier=new.tier,
            billing_email=new.billing_email,
            starts_on=new.starts_on,
        )
    )
    await session.flush()


async def count_members(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(Member)) or 0


async def find_member(session: AsyncSession, ref: str) -> tuple[Member, Membership] | None:
    """A member by id or by name (any case and spacing), with its latest membership."""
    member = await session.get(Member, ref.strip())
    if member is None:
        member = await session.scalar(select(Member).where(Member.name_key == name_key(ref)))
    if member is None:
        return None
    membership = await session.scalar(
        select(Membership)
        .where(Membership.member_id == member.id)
        .order_by(Membership.starts_on.desc())
        .limit(1)
    )
    assert membership is not None
    return member, membership


async def take_numbers(session: AsyncSession, series: str, count: int) -> int:
    """Reserve ``count`` consecutive numbers in ``series``; returns the first.

    Called in the transaction that inserts the documents, after the write lock
    is taken (SQLite BEGIN IMMEDIATE; FOR UPDATE on PostgreSQL), so a rollback
    gives the numbers back and no two transactions see the same last number.
    """
    row = await session.scalar(
        select(NumberSeries).where(NumberSeries.series == series).with_for_update()
    )
    if row is None:
        row = NumberSeries(series=series, last_number=0)
        session.add(row)
    first = row.last_number + 1
    row.last_number += count
    await session.flush()
    return first


def _locked(query: Select[tuple[Invoice]], for_update: bool) -> Select[tuple[Invoice]]:
    """``query`` taking a row lock until the transaction ends, if ``for_update``.

    A handler that reads an invoice and then changes money or status by what it
    read must lock it: on PostgreSQL (READ COMMITTED) two replicas would otherwise
    both read the same ``paid_pence`` and both accept. SQLite holds the database's
    write lock from BEGIN IMMEDIATE and has no row locks. ``populate_existing``
    makes the session take the locked row's values, not a copy it loaded earlier.
    """
    if not for_update:
        return query
    return query.with_for_update().execution_options(populate_existing=True)


async def find_invoice(
    session: AsyncSession, number: str, *, for_update: bool = False
) -> Invoice | None:
    """An invoice or credit note by its number; locked if ``for_update``."""
    parsed = parse_number(number)
    if parsed is None:
        return None
    series, value = parsed
    return await session.scalar(
        _locked(
            select(Invoice).where(Invoice.series == series, Invoice.number == value), for_update
        )
    )


async def booking_invoice(
    session: AsyncSession, booking_id: str, *, for_update: bool = False
) -> Invoice | None:
    """The invoice for a booking, if it was charged; locked if ``for_update``."""
    return await session.scalar(
        _locked(
            select(Invoice).where(Invoice.booking_id == booking_id, Invoice.kind == "invoice"),
            for_update,
        )
    )


async def lines_of(session: AsyncSession, invoice_id: str) -> list[InvoiceLine]:
    return list(
        await session.scalars(
            select(InvoiceLine)
            .where(InvoiceLine.invoice_id == invoice_id)
            .order_by(InvoiceLine.position)
        )
    )


async def recurring_invoice(
    session: AsyncSession, membership_id: str, year: int, *, for_update: bool = False
) -> Invoice | None:
    """A membership's invoice for a billing year, if billed; locked if ``for_update``."""
    return await session.scalar(
        _locked(
            select(Invoice).where(
                Invoice.membership_id == membership_id,
                Invoice.year == year,
                text("invoices.purpose = 'recurring'"),  # literal: matches the partial index
            ),
            for_update,
        )
    )


async def renew_lease(session: AsyncSession, run_id: str, owner: str, until: datetime) -> bool:
    """Extend ``owner``'s hold on the run; False if another process took it over."""
    result = await session.execute(
        update(InvoiceRun)
        .where(InvoiceRun.id == run_id, InvoiceRun.owner == owner, InvoiceRun.status == "running")
        .values(lease_until=until)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
