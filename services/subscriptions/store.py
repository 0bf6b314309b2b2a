"""The subscriptions store: members, memberships, invoices and their numbers, runs, payments."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
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
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.subscriptions.domain import NewMembership
from services.subscriptions.domain.timeline import DatedTier, Timeline

INVOICE_SERIES = "INV"
CREDIT_NOTE_SERIES = "CN"
LIVE_RECURRING_SQL = "purpose = 'recurring' AND status <> 'void'"
# The same, qualified, for queries: SQLite uses a partial index only when the query's
# condition matches the index's WHERE as written, so this is a literal, not parameters.
LIVE_RECURRING = text("invoices.purpose = 'recurring' AND invoices.status <> 'void'")


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
    billing_address: Mapped[str | None] = mapped_column(String(500))
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)
    # The first day it pays for, when later than ``starts_on``: a member rejoining
    # within months its earlier membership already paid for (migration 0006).
    billing_starts_on: Mapped[date | None] = mapped_column(Date)

    @property
    def pays_from(self) -> date:
        return self.billing_starts_on or self.starts_on


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


ACTIVE_RUN_SQL = "status IN ('queued', 'running')"


class InvoiceRun(Base):
    __tablename__ = "invoice_runs"
    __table_args__ = (
        # One run of a year going at a time, whichever replica was asked (migration 0009).
        Index(
            "uq_invoice_runs_active_year",
            "year",
            unique=True,
            sqlite_where=text(ACTIVE_RUN_SQL),
            postgresql_where=text(ACTIVE_RUN_SQL),
        ),
    )

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
    # Every invoice of the year added up: 64 bits (migration 0011).
    net_pence: Mapped[int] = mapped_column(BigInteger, default=0)
    gross_pence: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(String(500))


class Invoice(Base):
    """An invoice or a credit note (``kind``); numbered in its series when issued."""

    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("series", "number", name="uq_invoices_series_number"),
        # One live recurring invoice per membership per billing year, whatever runs;
        # a void one leaves room for the invoice that replaces it (migration 0005).
        Index(
            "uq_invoices_recurring",
            "membership_id",
            "year",
            unique=True,
            sqlite_where=text(LIVE_RECURRING_SQL),
            postgresql_where=text(LIVE_RECURRING_SQL),
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
        # Never more paid and credited than billed, nor money on a void invoice,
        # whatever a handler read (migrations 0003 and 0004; triggers with the same
        # names on SQLite).
        CheckConstraint(
            "paid_pence >= 0 AND credited_pence >= 0 AND "
            "(kind <> 'invoice' OR paid_pence + credited_pence <= gross_pence)",
            name="ck_invoices_paid_within_gross",
        ),
        CheckConstraint(
            "status <> 'void' OR (paid_pence = 0 AND credited_pence = 0)",
            name="ck_invoices_nothing_paid_on_void",
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
    # As they were when it was issued: the billing contact's address, the member's
    # purchase-order reference (migration 0006).
    billing_address: Mapped[str | None] = mapped_column(String(500))
    purchase_order: Mapped[str | None] = mapped_column(String(50))
    issued_on: Mapped[date] = mapped_column(Date)
    due_on: Mapped[date | None] = mapped_column(Date)
    net_pence: Mapped[int] = mapped_column(Integer)
    vat_pence: Mapped[int] = mapped_column(Integer)
    gross_pence: Mapped[int] = mapped_column(Integer)
    paid_pence: Mapped[int] = mapped_column(Integer, default=0)
    # On an invoice: what credit notes took off it (their allocations). Always 0
    # on a credit note, whose own use is in its allocations.
    credited_pence: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(12))  # issued, part_paid, paid, credited, void
    credits_invoice_id: Mapped[str | None] = mapped_column(String(36))
    booking_id: Mapped[str | None] = mapped_column(String(64))
    refund_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    run_id: Mapped[str | None] = mapped_column(String(36))
    void_reason: Mapped[str | None] = mapped_column(String(200))
    replaces_invoice_id: Mapped[str | None] = mapped_column(String(36))

    @property
    def display_number(self) -> str:
        return display_number(self.series, self.number)

    @property
    def balance_pence(self) -> int:
        """What is still owed: the total less payments less credits; 0 when void or a credit note."""
        if self.kind != "invoice" or self.status == "void":
            return 0
        return self.gross_pence - self.paid_pence - self.credited_pence


class CreditAllocation(Base):
    """Part (or all) of a credit note set against one invoice; the invoice's
    ``credited_pence`` is the sum of its rows here."""

    __tablename__ = "credit_allocations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    credit_note_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    amount_pence: Mapped[int] = mapped_column(Integer)
    allocated_on: Mapped[date] = mapped_column(Date)


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
    # A booking's line: who booked the place, apart from the description so that
    # erasure can clear them and leave the line (migration 0007). The email is how
    # erasure and subject access find the line when a member was billed.
    booker_name: Mapped[str | None] = mapped_column(String(200))
    booker_email: Mapped[str | None] = mapped_column(String(320), index=True)


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        # A card payment is recorded once, whichever of the person's return and the
        # provider's webhooks arrives first, and however often (migration 0010).
        Index(
            "uq_payments_provider_payment_id",
            "provider_payment_id",
            unique=True,
            sqlite_where=text("provider_payment_id IS NOT NULL"),
            postgresql_where=text("provider_payment_id IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    amount_pence: Mapped[int] = mapped_column(Integer)
    received_on: Mapped[date] = mapped_column(Date)
    reference: Mapped[str | None] = mapped_column(String(100))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The card payment provider's id of the payment, for money taken online.
    provider_payment_id: Mapped[str | None] = mapped_column(String(64))


class CardPayment(Base):
    """One attempt to pay an invoice by card: created with the provider, then followed
    until it ends. Nothing is owed less until it succeeds and its ``Payment`` is recorded
    (``payment_id``); a failed, cancelled or expired attempt records nothing."""

    __tablename__ = "card_payments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the site's attempt id
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    provider_payment_id: Mapped[str] = mapped_column(String(64), unique=True)
    amount_pence: Mapped[int] = mapped_column(Integer)
    # The provider's last word: created, started, submitted, capturable, success,
    # failed, cancelled, error; with its code and message when it failed.
    status: Mapped[str] = mapped_column(String(20))
    finished: Mapped[bool] = mapped_column(Boolean, default=False)
    code: Mapped[str | None] = mapped_column(String(10))
    message: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    payment_id: Mapped[str | None] = mapped_column(ForeignKey("payments.id"))
    # Why a payment that succeeded could not be set against its invoice (it was settled
    # meanwhile), for the finance team to refund.
    problem: Mapped[str | None] = mapped_column(String(300))


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


async def membership_for_update(session: AsyncSession, membership_id: str) -> Membership:
    """A membership, locked until the transaction ends and read afresh.

    Whatever changes what a membership is billed (a tier change, a leave) locks it
    first, as the invoicing run locks the memberships it bills: one waits for the
    other, so a change is either seen by the run or made after the run billed the
    member, and then credits and re-invoices what it alters."""
    membership = await session.scalar(
        _locked(select(Membership).where(Membership.id == membership_id), True)
    )
    assert membership is not None
    return membership


async def lock_memberships(session: AsyncSession, membership_ids: list[str]) -> None:
    """Lock the memberships until the transaction ends, in one order (by id) so that two
    transactions locking several never wait for each other in a circle."""
    ids = sorted(set(membership_ids))
    for first in range(0, len(ids), 500):
        await session.execute(
            select(Membership.id)
            .where(Membership.id.in_(ids[first : first + 500]))
            .order_by(Membership.id)
            .with_for_update()
        )


async def memberships_of(session: AsyncSession, member_id: str) -> list[Membership]:
    """A member's memberships, the first first: more than one if it left and rejoined."""
    return list(
        await session.scalars(
            select(Membership)
            .where(Membership.member_id == member_id)
            .order_by(Membership.starts_on)
        )
    )


async def billing_email_now(session: AsyncSession, invoice: Invoice) -> str:
    """Where news of ``invoice`` goes now: its member's current billing contact (which
    may have changed since it was issued), else the address it was issued to."""
    if invoice.member_id is None:
        return invoice.billing_email
    return (await current_billing_emails(session, [invoice.member_id])).get(
        invoice.member_id, invoice.billing_email
    )


async def current_billing_emails(session: AsyncSession, member_ids: list[str]) -> dict[str, str]:
    """Each member's billing email now: its latest membership's."""
    found: dict[str, tuple[date, str]] = {}
    for first in range(0, len(member_ids), 500):
        rows = await session.execute(
            select(Membership.member_id, Membership.starts_on, Membership.billing_email).where(
                Membership.member_id.in_(member_ids[first : first + 500])
            )
        )
        for member_id, starts_on, email in rows:
            if member_id not in found or starts_on > found[member_id][0]:
                found[member_id] = (starts_on, email)
    return {member_id: email for member_id, (_, email) in found.items()}


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


def _locked(query: Select[tuple[Any]], for_update: bool) -> Select[tuple[Any]]:
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


async def allocations_of(session: AsyncSession, document: Invoice) -> list[dict[str, Any]]:
    """For an invoice, the credit notes set against it; for a credit note, the invoices
    it was set against: each with its number, amount and day, oldest first."""
    mine, theirs = (
        (CreditAllocation.invoice_id, CreditAllocation.credit_note_id)
        if document.kind == "invoice"
        else (CreditAllocation.credit_note_id, CreditAllocation.invoice_id)
    )
    rows = await session.execute(
        select(
            Invoice.series,
            Invoice.number,
            CreditAllocation.amount_pence,
            CreditAllocation.allocated_on,
        )
        .join(Invoice, Invoice.id == theirs)
        .where(mine == document.id)
        .order_by(CreditAllocation.id)
    )
    return [
        {"number": display_number(series, number), "amount": amount, "on": on.isoformat()}
        for series, number, amount, on in rows
    ]


async def recurring_invoice(
    session: AsyncSession, membership_id: str, year: int, *, for_update: bool = False
) -> Invoice | None:
    """A membership's live (not void) invoice for a billing year, if billed; locked if
    ``for_update``."""
    return await session.scalar(
        _locked(
            select(Invoice).where(
                Invoice.membership_id == membership_id, Invoice.year == year, LIVE_RECURRING
            ),
            for_update,
        )
    )


async def tier_changes_of(
    session: AsyncSession, membership_ids: list[str]
) -> dict[str, list[TierChange]]:
    """Each membership's recorded tier changes, in the order they were recorded."""
    found: dict[str, list[TierChange]] = {}
    for first in range(0, len(membership_ids), 500):
        for change in await session.scalars(
            select(TierChange)
            .where(TierChange.membership_id.in_(membership_ids[first : first + 500]))
            .order_by(TierChange.id)
        ):
            found.setdefault(change.membership_id, []).append(change)
    return found


def timeline(
    *,
    starts_on: date,
    ends_on: date | None,
    tier: str,
    changes: list[TierChange],
) -> Timeline:
    """A membership's timeline from its row and its recorded changes. The first tier is
    the one the earliest change (by date, then by recording) moved it from; without
    changes, the membership's own."""
    first = min(changes, key=lambda c: (c.effective_on, c.id)).old_tier if changes else tier
    return Timeline(
        starts_on=starts_on,
        ends_on=ends_on,
        first_tier=first,
        changes=tuple(DatedTier(c.effective_on, c.new_tier) for c in changes),
    )


async def timeline_of(session: AsyncSession, membership: Membership) -> Timeline:
    changes = (await tier_changes_of(session, [membership.id])).get(membership.id, [])
    return timeline(
        starts_on=membership.pays_from,
        ends_on=membership.ends_on,
        tier=membership.tier,
        changes=changes,
    )


async def live_recurring_invoices(
    session: AsyncSession, membership_id: str, *, from_year: int, for_update: bool = False
) -> dict[int, Invoice]:
    """A membership's recurring invoices that are not void, from ``from_year`` on, by year;
    locked if ``for_update`` (a credit note will be set against them)."""
    query = select(Invoice).where(
        Invoice.membership_id == membership_id, Invoice.year >= from_year, LIVE_RECURRING
    )
    return {invoice.year: invoice for invoice in await session.scalars(_locked(query, for_update))}


async def renew_lease(session: AsyncSession, run_id: str, owner: str, until: datetime) -> bool:
    """Extend ``owner``'s hold on the run; False if another process took it over."""
    result = await session.execute(
        update(InvoiceRun)
        .where(InvoiceRun.id == run_id, InvoiceRun.owner == owner, InvoiceRun.status == "running")
        .values(lease_until=until)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


# A person's data (erasure and subject access): found by their email, matched in any case.

# The columns of free text that may mention anyone, with the tables they are in.
FREE_TEXT: tuple[tuple[type[Base], str], ...] = (
    (Member, "reference"),
    (Membership, "billing_address"),
    (Invoice, "billing_address"),
    (Invoice, "purchase_order"),
    (Invoice, "void_reason"),
    (InvoiceLine, "description"),
    (Payment, "reference"),
)


async def memberships_billed_to(
    session: AsyncSession, email: str
) -> list[tuple[Member, Membership]]:
    """The memberships whose billing contact is ``email`` (normalised), with their members."""
    rows = await session.execute(
        select(Member, Membership)
        .join(Membership, Membership.member_id == Member.id)
        .where(func.lower(Membership.billing_email) == email)
        .order_by(Member.name_key, Membership.starts_on)
    )
    return [(member, membership) for member, membership in rows]


async def members_with_phone(session: AsyncSession) -> list[Member]:
    """Every member that keeps a billing contact's phone."""
    return list(await session.scalars(select(Member).where(Member.phone.is_not(None))))


async def lines_booked_by(session: AsyncSession, email: str) -> list[InvoiceLine]:
    """The lines of booking documents whose booker is ``email`` (normalised, as lines keep it)."""
    return list(
        await session.scalars(
            select(InvoiceLine)
            .where(InvoiceLine.booker_email == email)
            .order_by(InvoiceLine.invoice_id, InvoiceLine.position)
        )
    )


async def lines_named_without_email(session: AsyncSession, names: set[str]) -> list[InvoiceLine]:
    """The lines that name a booker in ``names`` (in any case) but keep no booker's email:
    lines issued to a member before lines kept the booker's email (migration 0007)."""
    if not names:
        return []
    return list(
        await session.scalars(
            select(InvoiceLine)
            .where(
                InvoiceLine.booker_email.is_(None),
                func.lower(InvoiceLine.booker_name).in_(sorted(n.lower() for n in names)),
            )
            .order_by(InvoiceLine.invoice_id, InvoiceLine.position)
        )
    )


async def documents_to(
    session: AsyncSession, email: str, *, also: list[str] | None = None
) -> list[Invoice]:
    """The invoices and credit notes issued to ``email`` (normalised), and those of the
    ids in ``also``, by series and number."""
    found = {
        invoice.id: invoice
        for invoice in await session.scalars(
            select(Invoice).where(func.lower(Invoice.billing_email) == email)
        )
    }
    ids = sorted(set(also or ()) - set(found))
    for first in range(0, len(ids), 500):
        for invoice in await session.scalars(
            select(Invoice).where(Invoice.id.in_(ids[first : first + 500]))
        ):
            found[invoice.id] = invoice
    return sorted(found.values(), key=lambda invoice: (invoice.series, invoice.number))


async def mentioning(session: AsyncSession, needles: tuple[str, ...]) -> list[tuple[Base, str]]:
    """Each row and free-text column (of ``FREE_TEXT``) that holds any of ``needles``, in
    any case."""
    if not needles:
        return []
    found: list[tuple[Base, str]] = []
    for model, column_name in FREE_TEXT:
        column = getattr(model, column_name)
        rows = await session.scalars(
            select(model).where(
                or_(
                    *(
                        func.lower(column).contains(needle.lower(), autoescape=True)
                        for needle in needles
                    )
                )
            )
        )
        found += [(row, column_name) for row in rows]
    return found
