"""Subscriptions' handlers: one method per command or consumed fact.

``Subscriptions`` holds what every handler needs besides its message: the
catalog, the billing settings and the clock (injectable, so tests can move
time). Each handler runs inside the transaction ``kernel`` opened for it and
publishes through ``ctx.publish``, so its facts commit with its changes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from contracts.envelope import derived_message_id
from contracts.events_v1 import BookingCancelled, BookingChargeable
from contracts.money import Money
from contracts.subscriptions_v1 import (
    ChangeTier,
    ImportMembers,
    InvoicePaid,
    InvoiceRunStatus,
    InvoiceSummary,
    InvoiceVoided,
    JoinMember,
    LeaveMember,
    ListInvoices,
    ListMembers,
    MembershipChanged,
    MembershipEnded,
    MembershipStarted,
    RecordPayment,
    RunInvoicing,
    ShowInvoice,
    ShowMember,
    VoidInvoice,
)
from kernel.commands import CommandContext, Refused
from kernel.consumer import HandlerContext
from services.subscriptions import domain, invoicing, store
from services.subscriptions.document import render_invoice
from services.subscriptions.domain import billing
from services.subscriptions.domain.billing import Charge, Line
from services.subscriptions.domain.catalog import financial_year
from services.subscriptions.settings import BillingSettings
from services.subscriptions.store import Invoice, InvoiceRun, Member, Membership, Payment

LONDON = ZoneInfo("Europe/London")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _refused(error: domain.MembershipError | domain.CatalogError | billing.BillingError) -> Refused:
    return Refused(error.code, str(error), error.field)


@dataclass
class Subscriptions:
    settings: BillingSettings
    catalog: domain.Catalog
    clock: Clock = utc_now
    runner: invoicing.Runner | None = None

    def today(self) -> date:
        """Today in Europe/London, the calendar people bill by."""
        return self.clock().astimezone(LONDON).date()

    # Members

    async def join_member(self, command: JoinMember, ctx: CommandContext) -> dict[str, Any]:
        """Enrol a member and publish MembershipStarted in the same transaction."""
        try:
            new = domain.join(
                name=command.name,
                tier=command.tier,
                billing_email=str(command.billing_email),
                joined_on=command.joined_on,
                name_taken=await store.name_taken(ctx.session, command.name),
                tiers=self.catalog.tiers,
            )
        except domain.MembershipError as error:
            raise _refused(error) from None
        await store.add_membership(ctx.session, new, command.reference, command.phone)
        await ctx.publish(
            MembershipStarted(
                membership_id=new.membership_id,
                member_id=new.member_id,
                member_name=new.name,
                tier=new.tier,
                billing_email=new.billing_email,
                starts_on=new.starts_on,
            )
        )
        return {"member_id": new.member_id, "membership_id": new.membership_id}

    async def import_members(self, command: ImportMembers, ctx: CommandContext) -> dict[str, Any]:
        """Enrol every member of a file, or none: the first bad row refuses the lot."""
        lines = command.lines or list(range(1, len(command.members) + 1))
        taken = await store.taken_names(ctx.session, [m.name for m in command.members])
        seen: dict[str, int] = {}
        problems: list[tuple[str, int, str]] = []  # (code, line, reason)
        for line, member in zip(lines, command.members, strict=False):
            key = store.name_key(member.name)
            if key in taken:
                problems.append(("conflict", line, f"{member.name} is already a member"))
            elif key in seen:
                problems.append(("conflict", line, f"{member.name} is also on line {seen[key]}"))
            elif member.tier not in self.catalog.tiers:
                known = ", ".join(sorted(self.catalog.tiers))
                problems.append(
                    ("invalid", line, f"unknown tier {member.tier!r}; the tiers are {known}")
                )
            seen.setdefault(key, line)
        if problems:
            code, line, _ = problems[0]
            raise Refused(
                code,
                "nothing imported: " + "; ".join(f"line {n}: {why}" for _, n, why in problems),
                f"line {line}",
            )
        ids = [await self.join_member(member, ctx) for member in command.members]
        return {"joined": len(ids), "member_ids": [i["member_id"] for i in ids]}

    async def _member(self, session: Any, ref: str) -> tuple[Member, Membership]:
        found = await store.find_member(session, ref)
        if found is None:
            raise Refused("not_found", f"no member is called or numbered {ref!r}", "member")
        return found

    async def change_tier(self, command: ChangeTier, ctx: CommandContext) -> dict[str, Any]:
        """Move a member to another tier; if its year is billed, credit the old and invoice the new."""
        member, membership = await self._member(ctx.session, command.member)
        try:
            domain.check_tier_change(
                current_tier=membership.tier,
                new_tier=command.tier,
                starts_on=membership.starts_on,
                ends_on=membership.ends_on,
                effective_on=command.effective_on,
                tiers=self.catalog.tiers,
            )
            year = financial_year(command.effective_on)
            old, new = self.catalog.tier(membership.tier), self.catalog.tier(command.tier)
            old_price, new_price = old.price_for(year), new.price_for(year)
        except (domain.MembershipError, domain.CatalogError) as error:
            raise _refused(error) from None
        documents: list[str] = []
        # Locked: a void committed between this read and the credit note would
        # leave a credit against a void invoice.
        billed = await store.recurring_invoice(ctx.session, membership.id, year, for_update=True)
        if billed is not None and billed.status != "void":
            billed_from = billing.first_billable_month(year, membership.starts_on) or 0
            credit, invoice = billing.tier_change_charges(
                effective_on=command.effective_on,
                old_tier=old.code,
                old_label=old.label,
                old_price=old_price,
                new_tier=new.code,
                new_label=new.label,
                new_price=new_price,
                billed_from_month=billed_from,
            )
            who = invoicing.Billed(member.id, membership.id, member.name, membership.billing_email)
            for charge, tier in ((credit, old.code), (invoice, new.code)):
                row = await invoicing.issue(
                    ctx.session,
                    ctx.publish,
                    charge,
                    billed=who,
                    issued_on=self.today(),
                    due_days=self.settings.invoice_due_days,
                    tier=tier,
                    credits=billed if charge.kind == "credit_note" else None,
                )
                documents.append(store.display_number(row["series"], row["number"]))
        ctx.session.add(
            store.TierChange(
                membership_id=membership.id,
                old_tier=membership.tier,
                new_tier=command.tier,
                effective_on=command.effective_on,
                recorded_at=self.clock(),
            )
        )
        old_code, membership.tier = membership.tier, command.tier
        await ctx.publish(
            MembershipChanged(
                membership_id=membership.id,
                member_id=member.id,
                member_name=member.name,
                old_tier=old_code,
                new_tier=command.tier,
                effective_on=command.effective_on,
            )
        )
        return {"member_id": member.id, "documents": documents}

    async def leave_member(self, command: LeaveMember, ctx: CommandContext) -> dict[str, Any]:
        """End a membership; refund unused months if the catalog says so and the year is billed."""
        member, membership = await self._member(ctx.session, command.member)
        try:
            domain.check_leaving(
                starts_on=membership.starts_on,
                ends_on=membership.ends_on,
                leaves_on=command.leaves_on,
            )
        except domain.MembershipError as error:
            raise _refused(error) from None
        membership.ends_on = command.leaves_on
        documents: list[str] = []
        year = financial_year(command.leaves_on)
        billed = await store.recurring_invoice(  # locked, as in change_tier
            ctx.session, membership.id, year, for_update=True
        )
        if self.catalog.refund_leavers and billed is not None and billed.status != "void":
            tier = self.catalog.tier(membership.tier)
            refund = billing.leaver_refund(
                ends_on=command.leaves_on,
                tier_code=tier.code,
                tier_label=tier.label,
                price=tier.price_for(year),
                billed_from_month=billing.first_billable_month(year, membership.starts_on) or 0,
            )
            if refund is not None:
                row = await invoicing.issue(
                    ctx.session,
                    ctx.publish,
                    refund,
                    billed=invoicing.Billed(
                        member.id, membership.id, member.name, membership.billing_email
                    ),
                    issued_on=self.today(),
                    due_days=self.settings.invoice_due_days,
                    tier=tier.code,
                    credits=billed,
                )
                documents.append(store.display_number(row["series"], row["number"]))
        await ctx.publish(
            MembershipEnded(
                membership_id=membership.id,
                member_id=member.id,
                member_name=member.name,
                ends_on=command.leaves_on,
            )
        )
        return {"member_id": member.id, "documents": documents}

    async def list_members(self, command: ListMembers, ctx: CommandContext) -> dict[str, Any]:
        """Every member with its current tier; changes nothing."""
        query = (
            select(Member, Membership)
            .join(Membership, Membership.member_id == Member.id)
            .order_by(Member.name)
        )
        if command.tier:
            query = query.where(Membership.tier == command.tier)
        today = self.today()
        members = [
            {
                "member_id": member.id,
                "name": member.name,
                "tier": membership.tier,
                "billing_email": membership.billing_email,
                "starts_on": membership.starts_on.isoformat(),
                "ends_on": membership.ends_on.isoformat() if membership.ends_on else None,
                "current": membership.ends_on is None or membership.ends_on >= today,
            }
            for member, membership in await ctx.session.execute(query)
        ]
        return {"members": members}

    async def show_member(self, command: ShowMember, ctx: CommandContext) -> dict[str, Any]:
        """One member, its membership and its documents; changes nothing."""
        member, membership = await self._member(ctx.session, command.member)
        documents = await ctx.session.scalars(
            select(Invoice).where(Invoice.member_id == member.id).order_by(Invoice.issued_on)
        )
        return {
            "member_id": member.id,
            "name": member.name,
            "reference": member.reference,
            "phone": member.phone,
            "tier": membership.tier,
            "tier_label": self.catalog.tier(membership.tier).label
            if membership.tier in self.catalog.tiers
            else membership.tier,
            "billing_email": membership.billing_email,
            "starts_on": membership.starts_on.isoformat(),
            "ends_on": membership.ends_on.isoformat() if membership.ends_on else None,
            "documents": [invoice_summary_row(d) for d in documents],
        }

    # Invoicing runs

    async def run_invoicing(self, command: RunInvoicing, ctx: CommandContext) -> dict[str, Any]:
        """Preview a year's run (dry run), or record a run for the runner and answer its id."""
        try:
            if command.dry_run:
                return await invoicing.preview(ctx.session, self.catalog, command.year)
            run = await invoicing.request_run(
                ctx.session,
                self.catalog,
                year=command.year,
                issued_on=command.issued_on or self.today(),
                now=self.clock(),
                lease_s=self.settings.invoice_run_lease_s,
            )
        except domain.CatalogError as error:
            raise _refused(error) from None
        except invoicing.RunBusy as busy:
            raise Refused("busy", str(busy), "year") from None
        if self.runner is not None:  # the runner looks again once this has committed
            asyncio.get_running_loop().call_later(0.01, self.runner.wake)
        return invoicing.run_record(run)

    async def invoice_run_status(
        self, command: InvoiceRunStatus, ctx: CommandContext
    ) -> dict[str, Any]:
        """A run's record, or the runs of a year (newest first); changes nothing."""
        if command.run_id:
            run = await ctx.session.get(InvoiceRun, command.run_id)
            if run is None:
                raise Refused("not_found", f"no invoicing run {command.run_id}", "run_id")
            return invoicing.run_record(run)
        query = select(InvoiceRun).order_by(InvoiceRun.created_at.desc()).limit(50)
        if command.year:
            query = query.where(InvoiceRun.year == command.year)
        return {"runs": [invoicing.run_record(run) for run in await ctx.session.scalars(query)]}

    # Invoices

    async def list_invoices(self, command: ListInvoices, ctx: CommandContext) -> dict[str, Any]:
        query = select(Invoice).order_by(Invoice.series.desc(), Invoice.number).limit(command.limit)
        if command.year:
            query = query.where(Invoice.year == command.year)
        if command.status == "overdue":
            query = query.where(
                Invoice.kind == "invoice",
                Invoice.status.in_(("issued", "part_paid")),
                Invoice.due_on < self.today(),
            )
        elif command.status:
            query = query.where(Invoice.status == command.status)
        return {"invoices": [invoice_summary_row(i) for i in await ctx.session.scalars(query)]}

    async def show_invoice(self, command: ShowInvoice, ctx: CommandContext) -> dict[str, Any]:
        invoice = await store.find_invoice(ctx.session, command.number)
        if invoice is None:
            raise Refused("not_found", f"no invoice or credit note {command.number}", "number")
        lines = await store.lines_of(ctx.session, invoice.id)
        payments = await ctx.session.scalars(
            select(Payment).where(Payment.invoice_id == invoice.id).order_by(Payment.received_on)
        )
        credits = None
        if invoice.credits_invoice_id:
            credited = await ctx.session.get(Invoice, invoice.credits_invoice_id)
            credits = credited.display_number if credited else None
        document = {
            **invoice_summary_row(invoice),
            "credits_invoice": credits,
            "lines": [
                {
                    "description": line.description,
                    "months": line.months,
                    "net": line.net_pence,
                    "vat_rate": line.vat_basis_points / 100,
                    "vat": line.vat_pence,
                    "gross": line.net_pence + line.vat_pence,
                }
                for line in lines
            ],
            "payments": [
                {
                    "amount": p.amount_pence,
                    "received_on": p.received_on.isoformat(),
                    "reference": p.reference,
                }
                for p in payments
            ],
        }
        if command.html:
            document["html"] = render_invoice(document, self.settings)
        return document

    async def invoice_summary(self, command: InvoiceSummary, ctx: CommandContext) -> dict[str, Any]:
        """Billed, paid and outstanding by tier for a year, and outstanding debt by age."""
        on = command.on or self.today()
        tiers: dict[str, dict[str, int | str]] = {}
        aged = {"not_due": 0, "1-30": 0, "31-60": 0, "61-90": 0, "over_90": 0}
        rows = await ctx.session.execute(
            select(
                Invoice.tier,
                Invoice.kind,
                Invoice.status,
                Invoice.due_on,
                Invoice.gross_pence,
                Invoice.paid_pence,
            ).where(Invoice.year == command.year)
        )
        for tier, kind, status, due_on, gross, paid in rows:
            row = tiers.setdefault(
                tier or "(events)",
                {
                    "tier": tier or "(events)",
                    "invoices": 0,
                    "billed": 0,
                    "credited": 0,
                    "paid": 0,
                    "outstanding": 0,
                },
            )
            if status == "void":
                continue
            if kind == "credit_note":
                row["credited"] += gross  # type: ignore[operator]
                continue
            outstanding = gross - paid
            row["invoices"] += 1  # type: ignore[operator]
            row["billed"] += gross  # type: ignore[operator]
            row["paid"] += paid  # type: ignore[operator]
            row["outstanding"] += outstanding  # type: ignore[operator]
            if outstanding > 0 and due_on is not None:
                days = (on - due_on).days
                bucket = (
                    "not_due"
                    if days <= 0
                    else "1-30"
                    if days <= 30
                    else "31-60"
                    if days <= 60
                    else "61-90"
                    if days <= 90
                    else "over_90"
                )
                aged[bucket] += outstanding
        by_tier = [tiers[code] for code in sorted(tiers)]
        totals = {
            key: sum(int(row[key]) for row in by_tier)
            for key in ("invoices", "billed", "credited", "paid", "outstanding")
        }
        return {
            "year": command.year,
            "on": on.isoformat(),
            "tiers": by_tier,
            "totals": totals,
            "aged": aged,
        }

    # Payments

    async def record_payment(self, command: RecordPayment, ctx: CommandContext) -> dict[str, Any]:
        """Record money against an invoice; refuse more than is outstanding."""
        # Locked until commit, so racing payments (and a racing void) see each
        # other's paid_pence and status instead of all checking against the same.
        invoice = await store.find_invoice(ctx.session, command.invoice, for_update=True)
        if invoice is None or invoice.kind != "invoice":
            raise Refused("not_found", f"no invoice {command.invoice}", "invoice")
        try:
            outstanding = billing.check_payment(
                number=invoice.display_number,
                status=invoice.status,
                gross_pence=invoice.gross_pence,
                paid_pence=invoice.paid_pence,
                amount_pence=command.amount.amount_minor,
            )
        except billing.BillingError as error:
            raise _refused(error) from None
        payment = Payment(
            id=str(uuid.uuid4()),
            invoice_id=invoice.id,
            amount_pence=command.amount.amount_minor,
            received_on=command.received_on,
            reference=command.reference,
            recorded_at=self.clock(),
        )
        ctx.session.add(payment)
        invoice.paid_pence += command.amount.amount_minor
        invoice.status = billing.status_after_payment(invoice.gross_pence, invoice.paid_pence)
        await ctx.publish(
            InvoicePaid(
                invoice_id=invoice.id,
                number=invoice.display_number,
                payment_id=payment.id,
                amount=command.amount,
                outstanding=Money(amount_minor=outstanding),
                fully_paid=outstanding == 0,
                received_on=command.received_on,
                billing_email=invoice.billing_email,
            ),
            id=derived_message_id("InvoicePaid", payment.id),
        )
        return {
            "invoice": invoice.display_number,
            "status": invoice.status,
            "paid": invoice.paid_pence,
            "outstanding": outstanding,
        }

    async def void_invoice(self, command: VoidInvoice, ctx: CommandContext) -> dict[str, Any]:
        """Void an invoice nothing is paid on; locked, so no payment lands meanwhile."""
        invoice = await store.find_invoice(ctx.session, command.invoice, for_update=True)
        if invoice is None or invoice.kind != "invoice":
            raise Refused("not_found", f"no invoice {command.invoice}", "invoice")
        if invoice.status == "void":
            raise Refused("void", f"invoice {invoice.display_number} is already void", "invoice")
        if invoice.paid_pence:
            raise Refused(
                "paid",
                f"invoice {invoice.display_number} has payments; credit it instead of voiding it",
                "invoice",
            )
        invoice.status = "void"
        invoice.void_reason = command.reason
        await ctx.publish(
            InvoiceVoided(
                invoice_id=invoice.id, number=invoice.display_number, reason=command.reason
            ),
            id=derived_message_id("InvoiceVoided", invoice.id),
        )
        return {"invoice": invoice.display_number, "status": "void"}

    # Facts from events

    async def booking_chargeable(self, fact: BookingChargeable, ctx: HandlerContext) -> None:
        """Invoice a chargeable booking once: to the member if there is one, else the booker."""
        if await ctx.session.scalar(
            select(Invoice.id).where(
                Invoice.booking_id == fact.booking_id, Invoice.kind == "invoice"
            )
        ):
            return
        member = await ctx.session.get(Member, fact.member_id) if fact.member_id else None
        if member is not None:
            _, membership = await self._member(ctx.session, member.id)
            who = invoicing.Billed(member.id, None, member.name, membership.billing_email)
        else:
            who = invoicing.Billed(
                None, None, fact.organisation_name or fact.booker_name, str(fact.booker_email)
            )
        starts = fact.event_starts_at.astimezone(LONDON).date()
        charge = Charge(
            "invoice",
            "booking",
            financial_year(starts),
            (
                Line(
                    f"{fact.event_title}, {starts:%-d %b %Y}: place for {fact.booker_name} "
                    f"(booking {fact.reference})",
                    None,
                    0,
                    fact.fee.amount_minor,
                    self.settings.booking_vat_basis_points,
                ),
            ),
        )
        await invoicing.issue(
            ctx.session,
            ctx.publish,
            charge,
            billed=who,
            issued_on=self.today(),
            due_days=self.settings.invoice_due_days,
            booking_id=fact.booking_id,
            refund_until=fact.refund_until,
        )

    async def booking_cancelled(self, fact: BookingCancelled, ctx: HandlerContext) -> None:
        """Credit a charged booking cancelled inside its refund window (or by the organiser), once."""
        # Locked, so a void of the invoice cannot commit between this check and the credit.
        invoice = await store.booking_invoice(ctx.session, fact.booking_id, for_update=True)
        if invoice is None or invoice.status == "void":
            return
        in_window = fact.reason != "booker" or (
            invoice.refund_until is not None
            and fact.cancelled_at <= invoicing._aware(invoice.refund_until)
        )
        if not in_window:
            return
        if await ctx.session.scalar(
            select(Invoice.id).where(
                Invoice.booking_id == fact.booking_id, Invoice.kind == "credit_note"
            )
        ):
            return
        lines = await store.lines_of(ctx.session, invoice.id)
        charge = Charge(
            "credit_note",
            "booking_refund",
            invoice.year,
            tuple(
                Line(
                    f"Cancelled: {line.description}",
                    None,
                    0,
                    line.net_pence,
                    line.vat_basis_points,
                )
                for line in lines
            ),
        )
        await invoicing.issue(
            ctx.session,
            ctx.publish,
            charge,
            billed=invoicing.Billed(
                invoice.member_id, None, invoice.billed_name, invoice.billing_email
            ),
            issued_on=self.today(),
            due_days=0,
            credits=invoice,
            booking_id=fact.booking_id,
        )


async def join_member(command: JoinMember, ctx: CommandContext) -> dict[str, Any]:
    """Enrol a member with the settings' catalog: the handler without a running service."""
    settings = BillingSettings()
    return await Subscriptions(settings, settings.catalog()).join_member(command, ctx)


def invoice_summary_row(invoice: Invoice) -> dict[str, Any]:
    return {
        "number": invoice.display_number,
        "kind": invoice.kind,
        "purpose": invoice.purpose,
        "year": invoice.year,
        "tier": invoice.tier,
        "member_id": invoice.member_id,
        "billed_name": invoice.billed_name,
        "billing_email": invoice.billing_email,
        "issued_on": invoice.issued_on.isoformat(),
        "due_on": invoice.due_on.isoformat() if invoice.due_on else None,
        "net": invoice.net_pence,
        "vat": invoice.vat_pence,
        "gross": invoice.gross_pence,
        "paid": invoice.paid_pence,
        "outstanding": invoice.gross_pence - invoice.paid_pence
        if invoice.kind == "invoice" and invoice.status != "void"
        else 0,
        "status": invoice.status,
        "booking_id": invoice.booking_id,
    }


async def count_invoices(session: Any, year: int | None = None) -> int:
    query = select(func.count()).select_from(Invoice).where(Invoice.kind == "invoice")
    if year is not None:
        query = query.where(Invoice.year == year)
    return await session.scalar(query) or 0
