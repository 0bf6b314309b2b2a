"""Issuing documents and running a year's invoicing: the store side of the billing rules.

A run is a row in ``invoice_runs``. Asking for one records it (``queued``) and
answers at once; the runner claims it with a lease, then issues invoices in
chunks, one transaction per chunk: numbers, invoices, lines, the run's counts
and the ``InvoiceIssued`` facts commit together. A process that dies mid-run
leaves the run ``running`` with a lease that lapses; the next runner (or a new
request) takes it over and bills only who is still unbilled. The unique index
on (membership, year) for recurring invoices backs this in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pydantic_core
from sqlalchemy import and_, exists, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts import Envelope
from contracts.envelope import derived_message_id, new_id
from contracts.money import Money
from contracts.subscriptions_v1 import (
    CreditNoteIssued,
    DocumentLine,
    InvoiceIssued,
    InvoiceRunCompleted,
)
from kernel import outbox
from kernel.outbox import Publisher
from services.subscriptions.domain import Catalog, CatalogError, Charge
from services.subscriptions.domain.billing import allocate_credit, due_date, status_of
from services.subscriptions.domain.catalog import year_ends, year_starts
from services.subscriptions.domain.timeline import Timeline, yearly_charge
from services.subscriptions.store import (
    CREDIT_NOTE_SERIES,
    INVOICE_SERIES,
    LIVE_RECURRING,
    CreditAllocation,
    Invoice,
    InvoiceLine,
    InvoiceRun,
    Member,
    Membership,
    TierChange,
    display_number,
    lock_memberships,
    renew_lease,
    take_numbers,
    tier_changes_of,
    timeline,
)

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
ACTIVE = ("queued", "running")


class RunBusy(Exception):
    """Raised when a run of the same year is already going."""

    def __init__(self, run: InvoiceRun) -> None:
        super().__init__(
            f"invoicing run {run.id} for {run.year} is already {run.status} "
            f"({run.issued} issued so far); wait for it to finish"
        )
        self.run = run


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Billed:
    """Who a document is for, and the contact details it is issued with."""

    member_id: str | None
    membership_id: str | None
    name: str
    email: str
    address: str | None = None
    purchase_order: str | None = None

    @classmethod
    def member(cls, member: Member, membership: Membership, *, yearly: bool = True) -> Billed:
        """A member's billing contact; ``yearly`` documents also name the membership."""
        return cls(
            member.id,
            membership.id if yearly else None,
            member.name,
            membership.billing_email,
            membership.billing_address,
            member.reference,
        )


def _money(pence: int) -> Money:
    return Money(amount_minor=pence)


def _lines(charge: Charge) -> list[DocumentLine]:
    return [
        DocumentLine(
            description=line.description,
            months=line.months,
            net=_money(line.net_pence),
            vat=_money(line.vat_pence),
        )
        for line in charge.lines
    ]


def _money_json(pence: int) -> dict[str, Any]:
    return {"amount_minor": pence, "currency": "GBP"}


@dataclass(frozen=True)
class Priced:
    """What a charge puts on every document issued for it, worked out once: a run's
    thousands of invoices share a few dozen charges."""

    charge: Charge
    columns: dict[str, Any]  # the document's columns that follow from the charge
    lines: tuple[dict[str, Any], ...]  # its lines' rows, but for the document's id
    fact: dict[str, Any]  # InvoiceIssued's fields that follow from the charge, as JSON

    @classmethod
    def of(cls, charge: Charge) -> Priced:
        return cls(
            charge,
            columns={
                "kind": charge.kind,
                "purpose": charge.purpose,
                "year": charge.year,
                "net_pence": charge.net_pence,
                "vat_pence": charge.vat_pence,
                "gross_pence": charge.gross_pence,
            },
            lines=tuple(
                {
                    "position": position,
                    "description": line.description,
                    "tier": line.tier,
                    "months": line.months,
                    "net_pence": line.net_pence,
                    "vat_basis_points": line.vat_basis_points,
                    "vat_pence": line.vat_pence,
                    "booker_name": line.booker_name,
                    "booker_email": line.booker_email,
                }
                for position, line in enumerate(charge.lines, 1)
            ),
            fact={
                "purpose": charge.purpose,
                "year": charge.year,
                "lines": [
                    {
                        "description": line.description,
                        "months": line.months,
                        "net": _money_json(line.net_pence),
                        "vat": _money_json(line.vat_pence),
                    }
                    for line in charge.lines
                ],
                "net": _money_json(charge.net_pence),
                "vat": _money_json(charge.vat_pence),
                "gross": _money_json(charge.gross_pence),
            },
        )


def _priced(charge: Charge | Priced) -> Priced:
    return charge if isinstance(charge, Priced) else Priced.of(charge)


def _rows(
    charge: Charge | Priced,
    *,
    invoice_id: str,
    series: str,
    number: int,
    billed: Billed,
    issued_on: date,
    due_on: date | None,
    tier: str | None = None,
    **extra: Any,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    priced = _priced(charge)
    invoice = {
        "id": invoice_id,
        **priced.columns,
        "series": series,
        "number": number,
        "membership_id": billed.membership_id,
        "member_id": billed.member_id,
        "tier": tier,
        "billed_name": billed.name,
        "billing_email": billed.email,
        "billing_address": billed.address,
        "purchase_order": billed.purchase_order,
        "issued_on": issued_on,
        "due_on": due_on,
        "paid_pence": 0,
        "credited_pence": 0,
        "status": "issued",
        "credits_invoice_id": None,
        "booking_id": None,
        "refund_until": None,
        "run_id": None,
        "void_reason": None,
        "replaces_invoice_id": None,
        **extra,
    }
    lines = [{"invoice_id": invoice_id, **line} for line in priced.lines]
    return invoice, lines


INVOICES = Invoice.__table__
LINES = InvoiceLine.__table__


def invoice_issued_data(invoice: dict[str, Any], charge: Charge | Priced) -> dict[str, Any]:
    """``InvoiceIssued(...).model_dump(mode="json")`` for a row built here, without Pydantic:
    a run builds thousands, from data validated when the members joined. A unit test
    checks that the model validates it and dumps it back unchanged."""
    fact = _priced(charge).fact
    return {
        "invoice_id": invoice["id"],
        "number": display_number(invoice["series"], invoice["number"]),
        "purpose": fact["purpose"],
        "year": fact["year"],
        "member_id": invoice["member_id"],
        "billed_name": invoice["billed_name"],
        "billing_email": invoice["billing_email"],
        "issued_on": invoice["issued_on"].isoformat(),
        "due_on": invoice["due_on"].isoformat(),
        "lines": fact["lines"],
        "net": fact["net"],
        "vat": fact["vat"],
        "gross": fact["gross"],
        "booking_id": invoice["booking_id"],
    }


def issued_envelope_head(*, run_id: str, occurred_at: datetime) -> dict[str, Any]:
    """The envelope every ``InvoiceIssued`` of a run's chunk shares but for its id and
    body, as its wire form has it: made (and checked) by the model once per chunk."""
    return Envelope(
        id=run_id,
        type=InvoiceIssued.TYPE,
        version=InvoiceIssued.VERSION,
        occurred_at=occurred_at.astimezone(UTC),
        correlation_id=run_id,
        data={},
    ).model_dump(mode="json", exclude={"actor"})


def wire_form(head: dict[str, Any], message_id: str, data: dict[str, Any]) -> bytes:
    """``Envelope.to_bytes()`` of the envelope ``head`` with its id and body, without
    building the model: a run writes thousands. A unit test checks they are the same."""
    return pydantic_core.to_json({**head, "id": message_id, "data": data})


def invoice_issued(invoice: dict[str, Any], charge: Charge) -> InvoiceIssued:
    return InvoiceIssued(
        invoice_id=invoice["id"],
        number=display_number(invoice["series"], invoice["number"]),
        purpose=charge.purpose,  # type: ignore[arg-type]
        year=charge.year,
        member_id=invoice["member_id"],
        billed_name=invoice["billed_name"],
        billing_email=invoice["billing_email"],
        issued_on=invoice["issued_on"],
        due_on=invoice["due_on"],
        lines=_lines(charge),
        net=_money(charge.net_pence),
        vat=_money(charge.vat_pence),
        gross=_money(charge.gross_pence),
        booking_id=invoice["booking_id"],
    )


async def issue(
    session: AsyncSession,
    publish: Publisher,
    charge: Charge,
    *,
    billed: Billed,
    issued_on: date,
    due_days: int,
    tier: str | None = None,
    credits: Invoice | None = None,
    against: Sequence[Invoice] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Number and store one invoice or credit note and publish its fact; returns its row.

    A credit note is set against the invoice it ``credits`` (or, in order, against
    each of ``against``: the invoices must be locked), up to what each still owes;
    whatever is left over stays on the member's account.
    """
    series = INVOICE_SERIES if charge.kind == "invoice" else CREDIT_NOTE_SERIES
    number = await take_numbers(session, series, 1)
    invoice, lines = _rows(
        charge,
        invoice_id=str(uuid.uuid4()),
        series=series,
        number=number,
        billed=billed,
        issued_on=issued_on,
        due_on=due_date(issued_on, due_days) if charge.kind == "invoice" else None,
        tier=tier,
        credits_invoice_id=credits.id if credits else None,
        **extra,
    )
    await session.execute(insert(Invoice), [invoice])
    await session.execute(insert(InvoiceLine), lines)
    if charge.kind == "credit_note":
        targets = list(against) if against is not None else [credits] if credits else []
        await set_credit_against(session, invoice, targets, issued_on)
    if charge.kind == "invoice":
        await publish(
            invoice_issued(invoice, charge), id=derived_message_id("InvoiceIssued", invoice["id"])
        )
    else:
        await publish(
            CreditNoteIssued(
                credit_note_id=invoice["id"],
                number=display_number(series, number),
                credits_invoice=credits.display_number if credits else None,
                purpose=charge.purpose,  # type: ignore[arg-type]
                member_id=billed.member_id,
                billed_name=billed.name,
                billing_email=billed.email,
                issued_on=issued_on,
                lines=_lines(charge),
                net=_money(charge.net_pence),
                vat=_money(charge.vat_pence),
                gross=_money(charge.gross_pence),
            ),
            id=derived_message_id("CreditNoteIssued", invoice["id"]),
        )
    return invoice


async def set_credit_against(
    session: AsyncSession, note: dict[str, Any], invoices: list[Invoice], on: date
) -> int:
    """Set the credit note ``note`` against ``invoices`` (locked), in order; returns what is left.

    Each invoice takes no more than its balance, so the store's rule (paid and
    credited never above the total) holds; its status follows its money.
    """
    amounts = allocate_credit(note["gross_pence"], [i.balance_pence for i in invoices])
    for invoice, amount in zip(invoices, amounts, strict=True):
        if amount == 0:
            continue
        session.add(
            CreditAllocation(
                credit_note_id=note["id"],
                invoice_id=invoice.id,
                amount_pence=amount,
                allocated_on=on,
            )
        )
        invoice.credited_pence += amount
        invoice.status = status_of(invoice.gross_pence, invoice.paid_pence, invoice.credited_pence)
    await session.flush()
    return note["gross_pence"] - sum(amounts)


# Which memberships a year bills


def _active_in(year: int) -> Any:
    return and_(
        Membership.starts_on <= year_ends(year),
        or_(Membership.ends_on.is_(None), Membership.ends_on >= year_starts(year)),
    )


def _billed_in(year: int) -> Any:
    """A live recurring invoice bills the membership for the year; a void one does not."""
    return exists().where(
        Invoice.membership_id == Membership.id, Invoice.year == year, LIVE_RECURRING
    )


async def count_unbilled(session: AsyncSession, year: int) -> int:
    return (
        await session.scalar(
            select(func.count()).select_from(Membership).where(_active_in(year), ~_billed_in(year))
        )
        or 0
    )


async def count_billed(session: AsyncSession, year: int) -> int:
    return (
        await session.scalar(
            select(func.count()).select_from(Invoice).where(Invoice.year == year, LIVE_RECURRING)
        )
        or 0
    )


async def unbilled(
    session: AsyncSession,
    year: int,
    *,
    after: str = "",
    limit: int | None = None,
    among: list[str] | None = None,
) -> list[Any]:
    """Memberships active in ``year`` with no recurring invoice for it (of ``among``, if
    given), by name: the run numbers invoices in alphabetical order of member."""
    query = (
        select(
            Membership.id.label("membership_id"),
            Membership.tier,
            Membership.billing_email,
            Membership.billing_address,
            Membership.starts_on,
            Membership.billing_starts_on,
            Membership.ends_on,
            Member.id.label("member_id"),
            Member.name,
            Member.name_key,
            Member.reference,
        )
        .join(Member, Member.id == Membership.member_id)
        .where(_active_in(year), ~_billed_in(year), Member.name_key > after)
        .order_by(Member.name_key)
    )
    if among is not None:
        query = query.where(Membership.id.in_(among))
    if limit is not None:
        query = query.limit(limit)
    # Plain rows, not ORM objects: a run reads thousands per chunk.
    return list(await session.execute(query))


async def voided_for(session: AsyncSession, year: int, membership_ids: list[str]) -> dict[str, str]:
    """The latest void recurring invoice of each membership for ``year`` (the one a new
    invoice replaces), by membership."""
    found: dict[str, str] = {}
    any_void = select(Invoice.id).where(
        Invoice.year == year, Invoice.purpose == "recurring", Invoice.status == "void"
    )
    if await session.scalar(any_void.limit(1)) is None:  # the common case: one cheap look
        return found
    for first in range(0, len(membership_ids), 500):
        rows = await session.execute(
            select(Invoice.membership_id, Invoice.id)
            .where(
                Invoice.membership_id.in_(membership_ids[first : first + 500]),
                Invoice.year == year,
                Invoice.purpose == "recurring",
                Invoice.status == "void",
            )
            .order_by(Invoice.number)
        )
        found.update({membership_id: invoice_id for membership_id, invoice_id in rows})
    return found


def timeline_of_row(membership: Any, changes: list[TierChange] | None = None) -> Timeline:
    """An unbilled membership row's timeline, with its recorded tier changes."""
    return timeline(
        starts_on=membership.billing_starts_on or membership.starts_on,
        ends_on=membership.ends_on,
        tier=membership.tier,
        changes=changes or [],
    )


def charge_for(
    catalog: Catalog, year: int, membership: Any, changes: list[TierChange] | None = None
) -> Charge | None:
    """The year's invoice for an unbilled membership row, each month at its tier."""
    return yearly_charge(
        catalog, timeline_of_row(membership, changes), year, catalog.refund_leavers
    )


async def check_priced(session: AsyncSession, catalog: Catalog, year: int) -> None:
    """Raise CatalogError naming the first member still to bill for ``year`` at a tier
    whose prices had all ended by then (``Catalog.withdrawn``): it must move tier first.
    Looks only when a tier is withdrawn; otherwise ``check_year`` has said enough."""
    if not catalog.withdrawn(year):
        return
    rows = await unbilled(session, year)
    changes = await tier_changes_of(session, [row.membership_id for row in rows])
    for row in rows:
        try:
            charge_for(catalog, year, row, changes.get(row.membership_id))
        except CatalogError as error:
            raise CatalogError(
                error.code,
                f"{row.name} cannot be billed for {year}: {error}; move it to another tier first",
                "year",
            ) from None


async def preview(session: AsyncSession, catalog: Catalog, year: int) -> dict[str, Any]:
    """What a run of ``year`` would issue now, by tier; numbers nothing, changes nothing."""
    catalog.check_year(year)
    await check_priced(session, catalog, year)
    by_tier: dict[str, dict[str, Any]] = {}
    memberships = await unbilled(session, year)
    changes = await tier_changes_of(session, [m.membership_id for m in memberships])
    for membership in memberships:
        charge = charge_for(catalog, year, membership, changes.get(membership.membership_id))
        if charge is None:
            continue
        tier = charge.lines[0].tier or membership.tier
        row = by_tier.setdefault(tier, {"tier": tier, "members": 0, "net": 0, "vat": 0, "gross": 0})
        row["members"] += 1
        row["net"] += charge.net_pence
        row["vat"] += charge.vat_pence
        row["gross"] += charge.gross_pence
    tiers = [by_tier[code] for code in sorted(by_tier)]
    return {
        "year": year,
        "dry_run": True,
        "tiers": tiers,
        "to_issue": sum(t["members"] for t in tiers),
        "already_billed": await count_billed(session, year),
        "net": sum(t["net"] for t in tiers),
        "vat": sum(t["vat"] for t in tiers),
        "gross": sum(t["gross"] for t in tiers),
    }


# Runs


async def request_run(
    session: AsyncSession,
    catalog: Catalog,
    *,
    year: int,
    issued_on: date,
    now: datetime,
    lease_s: float,
    trigger: str = "operator",
) -> InvoiceRun:
    """Record a run of ``year`` for the runner; raises RunBusy or CatalogError.

    A run whose lease lapsed (its process died) is marked interrupted: the new
    run bills whoever it left unbilled.
    """
    catalog.check_year(year)
    await check_priced(session, catalog, year)
    for other in await _active_runs(session, year):
        if _aware(other.lease_until) > now:
            raise RunBusy(other)
        other.status = "interrupted"
        other.error = "its process stopped answering; taken over by a new run"
    run = InvoiceRun(
        id=str(uuid.uuid4()),
        year=year,
        status="queued",
        trigger=trigger,
        issued_on=issued_on,
        created_at=now,
        lease_until=now + timedelta(seconds=lease_s),
        to_bill=await count_unbilled(session, year),
        already_billed=await count_billed(session, year),
        issued=0,
        skipped=0,
        net_pence=0,
        gross_pence=0,
    )
    try:
        async with session.begin_nested():
            session.add(run)
    except IntegrityError:
        # Another replica recorded a run of this year since we looked (the index of one
        # active run per year); it is committed, so it can be read now.
        others = await _active_runs(session, year)
        if not others:
            raise
        raise RunBusy(others[0]) from None
    return run


async def _active_runs(session: AsyncSession, year: int) -> list[InvoiceRun]:
    return list(
        await session.scalars(
            select(InvoiceRun)
            .where(InvoiceRun.year == year, InvoiceRun.status.in_(ACTIVE))
            .execution_options(populate_existing=True)
        )
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run_record(run: InvoiceRun) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "year": run.year,
        "status": run.status,
        "trigger": run.trigger,
        "issued_on": run.issued_on.isoformat(),
        "created_at": _aware(run.created_at).isoformat(),
        "started_at": _aware(run.started_at).isoformat() if run.started_at else None,
        "finished_at": _aware(run.finished_at).isoformat() if run.finished_at else None,
        "to_bill": run.to_bill,
        "already_billed": run.already_billed,
        "issued": run.issued,
        "skipped": run.skipped,
        "net": run.net_pence,
        "gross": run.gross_pence,
        "error": run.error,
    }


SQLITE_PAUSE_S = 0.1


@dataclass
class Runner:
    """Claims queued (or abandoned) runs and issues their invoices in chunks."""

    sessions: async_sessionmaker[AsyncSession]
    catalog: Catalog
    clock: Clock
    due_days: int = 30
    chunk: int = 1000
    pause_s: float | None = None
    lease_s: float = 30.0
    on_commit: Callable[[], None] = lambda: None
    owner: str = ""

    def __post_init__(self) -> None:
        self.owner = self.owner or new_owner()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run_forever(self, poll_s: float = 1.0) -> None:
        while True:
            try:
                while await self.run_next():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("invoicing runner failed; trying again")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll_s)

    async def claim(self) -> InvoiceRun | None:
        now = self.clock()
        async with self.sessions() as session, session.begin():
            candidates = list(
                await session.scalars(
                    select(InvoiceRun)
                    .where(InvoiceRun.status.in_(ACTIVE))
                    .order_by(InvoiceRun.created_at)
                )
            )
            for run in candidates:
                if run.status == "running" and _aware(run.lease_until) > now:
                    continue  # someone is on it
                # Taken only if it is as we read it: the replicas' runners all look for
                # queued runs, and on PostgreSQL two would otherwise both start one.
                taken = await session.execute(
                    update(InvoiceRun)
                    .where(
                        InvoiceRun.id == run.id,
                        InvoiceRun.status == run.status,
                        InvoiceRun.owner.is_(None)
                        if run.owner is None
                        else InvoiceRun.owner == run.owner,
                    )
                    .values(
                        status="running",
                        owner=self.owner,
                        started_at=run.started_at or now,
                        lease_until=now + timedelta(seconds=self.lease_s),
                    )
                    .execution_options(synchronize_session=False)
                )
                if not taken.rowcount:  # type: ignore[attr-defined]
                    continue  # another runner got there first
                if run.status == "running":
                    log.warning("taking over invoicing run %s abandoned by %s", run.id, run.owner)
                await session.refresh(run)
                return run
        return None

    async def run_next(self) -> bool:
        """Claim one run and take it to the end; False if there was none to claim."""
        run = await self.claim()
        if run is None:
            return False
        log.info("invoicing run %s for %s: %d to bill", run.id, run.year, run.to_bill)
        after = ""
        chunks = 0
        while True:
            async with self.sessions() as session, session.begin():
                issued, after = await self._chunk(session, run, after)
                pause_s = self._pause_on(session.get_bind().dialect.name)
            self.on_commit()
            if issued is None:
                return True
            chunks += 1
            if chunks == 1:
                await self._refresh_statistics()
            await asyncio.sleep(pause_s)

    def _pause_on(self, dialect: str) -> float:
        """The pause between chunks: ``pause_s`` if set; otherwise, on SQLite, time for
        another process's writer to get in (it retries the write lock on the busy
        handler's schedule, every 100 ms at worst, not the moment it is free), and on
        PostgreSQL none (a waiter is woken as the row lock it waits for goes)."""
        if self.pause_s is not None:
            return self.pause_s
        return SQLITE_PAUSE_S if dialect == "sqlite" else 0.0

    async def _refresh_statistics(self) -> None:
        """On PostgreSQL, have the planner learn that the year now has invoices.

        A run adds thousands of invoices within seconds, long before autovacuum looks
        again: planned on statistics that know none of the year's, the search for the
        unbilled joins each membership against every invoice (a second a chunk at
        10,000 members, growing with each). Once analysed, the year is known, and its
        estimate grows with the table.
        """
        async with self.sessions() as session, session.begin():
            assert session.bind is not None
            if session.bind.dialect.name == "postgresql":
                await session.execute(text("ANALYZE invoices, memberships, members"))

    async def _chunk(
        self, session: AsyncSession, run: InvoiceRun, after: str
    ) -> tuple[int | None, str]:
        """Issue the next chunk; returns (how many, cursor), or (None, _) when the run is over."""
        now = self.clock()
        if not await renew_lease(
            session, run.id, self.owner, now + timedelta(seconds=self.lease_s)
        ):
            log.warning("invoicing run %s was taken over; stopping here", run.id)
            return None, after
        record = await session.get(InvoiceRun, run.id)
        assert record is not None
        batch = await unbilled(session, run.year, after=after, limit=self.chunk)
        if not batch:
            await self._finish(session, record, now)
            return None, after
        cursor = batch[-1].name_key
        # Locked, then read again: a tier change or a leave committed since the first
        # read is billed as it now stands, and one not yet made waits for this chunk,
        # then finds the invoice and credits and re-invoices what it alters. (On SQLite
        # the transaction has held the store's only write lock since it began, BEGIN
        # IMMEDIATE: nothing can have been committed since the first read.)
        assert session.bind is not None
        if session.bind.dialect.name != "sqlite":
            await lock_memberships(session, [row.membership_id for row in batch])
            batch = await unbilled(
                session, run.year, after=after, among=[row.membership_id for row in batch]
            )
        charges = []
        changes = await tier_changes_of(session, [row.membership_id for row in batch])
        # Most memberships share their dates and tier with many others: each distinct
        # timeline is priced once (a Charge is immutable).
        prices: dict[Timeline, Priced | None] = {}
        for row in batch:
            line = timeline_of_row(row, changes.get(row.membership_id))
            if line not in prices:
                charge = yearly_charge(self.catalog, line, run.year, self.catalog.refund_leavers)
                prices[line] = Priced.of(charge) if charge is not None else None
            priced = prices[line]
            if priced is None:
                record.skipped += 1
            else:
                charges.append((row, priced))
        first = await take_numbers(session, INVOICE_SERIES, len(charges)) if charges else 0
        replaced = await voided_for(session, run.year, [row.membership_id for row, _ in charges])
        invoices, lines, facts = [], [], []
        head = issued_envelope_head(run_id=record.id, occurred_at=now)
        due_on = due_date(record.issued_on, self.due_days)
        net = gross = 0
        for offset, (row, priced) in enumerate(charges):
            invoice, invoice_lines = _rows(
                priced,
                invoice_id=new_id(),
                series=INVOICE_SERIES,
                number=first + offset,
                billed=Billed(
                    row.member_id,
                    row.membership_id,
                    row.name,
                    row.billing_email,
                    row.billing_address,
                    row.reference,
                ),
                issued_on=record.issued_on,
                due_on=due_on,
                # The tier the year began at: its first months' (the lines say the rest).
                tier=priced.lines[0]["tier"],
                run_id=record.id,
                replaces_invoice_id=replaced.get(row.membership_id),
            )
            invoices.append(invoice)
            lines += invoice_lines
            fact_id = derived_message_id("InvoiceIssued", invoice["id"])
            data = invoice_issued_data(invoice, priced)
            facts.append((fact_id, InvoiceIssued.SUBJECT, wire_form(head, fact_id, data)))
            net += invoice["net_pence"]
            gross += invoice["gross_pence"]
        record.net_pence += net
        record.gross_pence += gross
        if invoices:
            await session.execute(INVOICES.insert(), invoices)
            await session.execute(LINES.insert(), lines)
            await outbox.add_payloads(session, facts)
        record.issued += len(invoices)
        return len(invoices), cursor

    async def _finish(self, session: AsyncSession, record: InvoiceRun, now: datetime) -> None:
        record.status = "completed"
        record.finished_at = now
        assert record.started_at is not None
        envelope = Envelope.wrap(
            InvoiceRunCompleted(
                run_id=record.id,
                year=record.year,
                issued=record.issued,
                already_billed=record.already_billed,
                net=_money(record.net_pence),
                gross=_money(record.gross_pence),
                started_at=_aware(record.started_at),
                finished_at=now,
            ),
            id=derived_message_id("InvoiceRunCompleted", record.id),
            correlation_id=record.id,
        )
        await outbox.add_many(session, [(envelope, InvoiceRunCompleted.SUBJECT)])
        log.info(
            "invoicing run %s for %s completed: %d issued, %d already billed",
            record.id,
            record.year,
            record.issued,
            record.already_billed,
        )
