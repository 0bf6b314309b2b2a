"""What runs by the calendar: the daily overdue sweep and the invoicing automation.

Both are idempotent: the reminders table's primary key (invoice, stage) sends
each stage once; the automation marks each scheduled moment once it has
started that moment's run, and the run itself bills only the unbilled. Every
replica runs them; their transactions take one lock first (SQLite's write lock,
PostgreSQL's advisory lock), so replicas that start at the same moment take
turns and the later ones find the work done rather than collide on those keys.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts.envelope import derived_message_id
from contracts.money import Money
from contracts.personal import is_erased_email
from contracts.subscriptions_v1 import InvoiceOverdue
from kernel.outbox import Publisher
from services.subscriptions import invoicing
from services.subscriptions.domain import Catalog, CatalogError
from services.subscriptions.domain.billing import reminder_stages_due
from services.subscriptions.domain.catalog import financial_year
from services.subscriptions.store import (
    AutomationMark,
    Invoice,
    Reminder,
    current_billing_emails,
)

log = logging.getLogger(__name__)
LONDON = ZoneInfo("Europe/London")
AUTOMATION_LOCK = 7710500002  # PostgreSQL advisory lock key (the migrations use ...01)


async def one_replica_at_a_time(session: AsyncSession) -> None:
    """Wait for any other replica's sweep or scheduled start to commit. On SQLite every
    transaction already holds the write lock from its start."""
    if session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUTOMATION_LOCK})


async def sweep_overdue(session: AsyncSession, publish: Publisher, today: date) -> int:
    """Send each unsettled invoice's reminder stage that has come; returns how many were sent.

    An invoice is chased for its balance (total less payments less credits): one
    credited in full is settled and never chased; one credited in part is chased
    for what remains. One whose billing contact was erased is not chased: no
    reminder is published to an erased stand-in address.
    """
    overdue = list(
        await session.scalars(
            select(Invoice).where(
                Invoice.kind == "invoice",
                Invoice.status.in_(("issued", "part_paid")),
                Invoice.due_on < today,
                Invoice.gross_pence > Invoice.paid_pence + Invoice.credited_pence,
            )
        )
    )
    if not overdue:
        return 0
    sent: dict[str, set[str]] = {}
    for invoice_id, stage in await session.execute(
        select(Reminder.invoice_id, Reminder.stage).where(
            Reminder.invoice_id.in_([i.id for i in overdue])
        )
    ):
        sent.setdefault(invoice_id, set()).add(stage)
    # Reminders go to whoever handles the member's billing now, not when it was issued.
    emails = await current_billing_emails(
        session, sorted({i.member_id for i in overdue if i.member_id})
    )
    count = 0
    unreachable = []
    for invoice in overdue:
        assert invoice.due_on is not None
        billing_email = emails.get(invoice.member_id or "", invoice.billing_email)
        if is_erased_email(billing_email):
            # The billing contact was erased: nobody to write to. Nothing is recorded,
            # so the stage due then goes to a new contact once one is set.
            unreachable.append(invoice.display_number)
            continue
        for stage, _days in reminder_stages_due(
            due_on=invoice.due_on, today=today, already_sent=sent.get(invoice.id, set())
        ):
            session.add(Reminder(invoice_id=invoice.id, stage=stage, sent_on=today))
            await publish(
                InvoiceOverdue(
                    invoice_id=invoice.id,
                    number=invoice.display_number,
                    stage=stage,  # type: ignore[arg-type]
                    days_overdue=(today - invoice.due_on).days,
                    due_on=invoice.due_on,
                    outstanding=Money(amount_minor=invoice.balance_pence),
                    billed_name=invoice.billed_name,
                    billing_email=billing_email,
                ),
                id=derived_message_id("InvoiceOverdue", invoice.id, stage),
            )
            count += 1
    if unreachable:
        log.warning(
            "%d overdue invoices not chased: their billing contact was erased (%s); "
            "set a new one with `vestry members contact`",
            len(unreachable),
            ", ".join(unreachable[:10]) + (", …" if len(unreachable) > 10 else ""),
        )
    await session.flush()
    return count


def due_moments(now: datetime, *, day: str, at: time) -> list[tuple[str, int, str]]:
    """The latest yearly and monthly moments at or before ``now``: (key, year to bill, trigger).

    The yearly run on ``day`` (MM-DD) bills the coming financial year: the one
    starting on or after that day, or the one it falls in from April on. The
    monthly sweep on the 1st bills the current year's joiners.
    """
    local = now.astimezone(LONDON)
    month, dom = (int(part) for part in day.split("-"))
    moments = []
    for calendar_year in (local.year, local.year - 1):
        moment = datetime.combine(date(calendar_year, month, dom), at, LONDON)
        if moment <= local:
            # From January to March the coming year starts in April of the same
            # calendar year; from April on, it is the year that just began.
            moments.append((f"yearly:{calendar_year}", calendar_year, "yearly"))
            break
    monthly = datetime.combine(local.date().replace(day=1), at, LONDON)
    if monthly > local:
        previous = (local.date().replace(day=1) - timedelta(days=1)).replace(day=1)
        monthly = datetime.combine(previous, at, LONDON)
    moments.append((f"monthly:{monthly:%Y-%m}", financial_year(monthly.date()), "monthly"))
    return moments


@dataclass
class Automation:
    """Starts scheduled runs and the daily overdue sweep, by an injectable clock."""

    sessions: async_sessionmaker[AsyncSession]
    catalog: Catalog
    clock: Callable[[], datetime]
    day: str = "04-01"
    at: time = time(6, 0)
    lease_s: float = 30.0
    on_run: Callable[[], None] = lambda: None
    on_commit: Callable[[], None] = lambda: None
    swept_on: date | None = field(default=None)

    async def tick(self) -> dict[str, Any]:
        """Do whatever is due now; returns what it did."""
        now = self.clock()
        started = []
        for key, year, trigger in due_moments(now, day=self.day, at=self.at):
            run_id = await self._start(key, year, trigger, now)
            if run_id:
                started.append(run_id)
        reminders = 0
        today = now.astimezone(LONDON).date()
        if self.swept_on != today and now.astimezone(LONDON).time() >= self.at:
            async with self.sessions() as session, session.begin():
                await one_replica_at_a_time(session)
                publish = Publisher(session)
                reminders = await sweep_overdue(session, publish, today)
            self.swept_on = today
            if reminders:
                self.on_commit()
        if started:
            self.on_run()
        return {"runs": started, "reminders": reminders}

    async def _start(self, key: str, year: int, trigger: str, now: datetime) -> str | None:
        async with self.sessions() as session, session.begin():
            await one_replica_at_a_time(session)
            if await session.get(AutomationMark, key) is not None:
                return None
            if await invoicing.count_unbilled(session, year) == 0:
                session.add(AutomationMark(moment=key, run_id="", done=True))
                return None
            try:
                run = await invoicing.request_run(
                    session,
                    self.catalog,
                    year=year,
                    issued_on=now.astimezone(LONDON).date(),
                    now=now,
                    lease_s=self.lease_s,
                    trigger=trigger,
                )
            except invoicing.RunBusy:
                return None  # a run of that year is going: look again next tick
            except CatalogError as error:
                log.error("automation cannot bill %s (%s): %s", year, key, error)
                session.add(AutomationMark(moment=key, run_id="", done=True))
                return None
            session.add(AutomationMark(moment=key, run_id=run.id, done=False))
            log.info("automation started invoicing run %s for %s (%s)", run.id, year, key)
            return run.id

    async def run_forever(self, tick_s: float) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("invoicing automation failed; trying again next tick")
            await asyncio.sleep(tick_s)
