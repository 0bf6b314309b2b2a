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
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from contracts.envelope import derived_message_id
from contracts.events_v1 import BookingCancelled, BookingChargeable
from contracts.money import Money
from contracts.subscriptions_v1 import (
    BillingContactChanged,
    ChangeBillingContact,
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
    ReissueInvoice,
    RejoinMember,
    RunInvoicing,
    ShowDocument,
    ShowInvoice,
    ShowMember,
    ShowStatement,
    VoidInvoice,
)
from kernel.commands import CommandContext, Refused
from kernel.consumer import HandlerContext
from services.subscriptions import accounts, domain, invoicing, store
from services.subscriptions.document import (
    Supplier,
    as_file,
    invoice_html,
    pdf_identifier,
    statement_html,
)
from services.subscriptions.domain import accounts as accounts_rules
from services.subscriptions.domain import billing
from services.subscriptions.domain.billing import Charge, Line
from services.subscriptions.domain.bounds import Bounds
from services.subscriptions.domain.catalog import financial_year
from services.subscriptions.domain.people import booker_to_keep
from services.subscriptions.domain.timeline import (
    DatedTier,
    leaving_documents,
    pays_from_on_rejoining,
    tier_change_documents,
    yearly_charge,
)
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
    bounds: Bounds = field(init=False)
    supplier: Supplier = field(init=False)

    def __post_init__(self) -> None:
        self.bounds = self.settings.bounds()
        self.supplier = Supplier.of(self.settings)

    def today(self) -> date:
        """Today in Europe/London, the calendar people bill by."""
        return self.clock().astimezone(LONDON).date()

    def _in_bounds(self, *checks: Callable[[], None]) -> None:
        """Run the bounds ``checks``; the first that fails refuses the command."""
        try:
            for check in checks:
                check()
        except billing.BillingError as error:
            raise _refused(error) from None

    # Members

    async def join_member(self, command: JoinMember, ctx: CommandContext) -> dict[str, Any]:
        """Enrol a member and publish MembershipStarted in the same transaction, recorded
        in the audit stream (the organisation and its tier; no address)."""
        joined = await self._join(command, ctx)
        await ctx.record_action(
            "join_member",
            target=command.name,
            filters={"tier": command.tier, "joined_on": command.joined_on.isoformat()},
            result=joined,
        )
        return joined

    async def _join(self, command: JoinMember, ctx: CommandContext) -> dict[str, Any]:
        self._in_bounds(lambda: self.bounds.check_date(command.joined_on, "joined_on"))
        found = await store.find_member(ctx.session, command.name)
        if found is not None and found[1].ends_on is not None:
            raise Refused(
                "conflict",
                f"{found[0].name} was a member until {found[1].ends_on}; rejoin it "
                "(vestry members rejoin) rather than join it again",
                "name",
            )
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
            else:
                try:
                    self.bounds.check_date(member.joined_on, "joined_on")
                except billing.BillingError as error:
                    problems.append((error.code, line, str(error)))
            seen.setdefault(key, line)
        if problems:
            code, line, _ = problems[0]
            raise Refused(
                code,
                "nothing imported: " + "; ".join(f"line {n}: {why}" for _, n, why in problems),
                f"line {line}",
            )
        ids = [await self._join(member, ctx) for member in command.members]
        answer = {"joined": len(ids), "member_ids": [i["member_id"] for i in ids]}
        await ctx.record_action(
            "import_members",
            target=f"{len(ids)} members",
            filters={"members": [m.name for m in command.members]},
            result=answer,
        )
        return answer

    async def _member(self, session: Any, ref: str) -> tuple[Member, Membership]:
        found = await store.find_member(session, ref)
        if found is None:
            raise Refused("not_found", f"no member is called or numbered {ref!r}", "member")
        return found

    async def change_tier(self, command: ChangeTier, ctx: CommandContext) -> dict[str, Any]:
        """Move a member to another tier from a date. A year not yet billed will bill each
        month at its tier; for each year already billed that the change reaches, credit
        the months it changes at their old tier and invoice them at the new one."""
        self._in_bounds(lambda: self.bounds.check_date(command.effective_on, "effective_on"))
        member, membership = await self._member(ctx.session, command.member)
        # Locked before its timeline and invoices are read: a run billing it meanwhile
        # waits, or has billed it and its invoice is found below.
        membership = await store.membership_for_update(ctx.session, membership.id)
        before = await store.timeline_of(ctx.session, membership)
        old_code = before.tier_on(command.effective_on)
        change = DatedTier(command.effective_on, command.tier)
        # Locked: a void or a payment committed between this read and the credit note
        # would leave a credit against a void invoice, or more settled than billed.
        billed = await store.live_recurring_invoices(
            ctx.session,
            membership.id,
            from_year=financial_year(command.effective_on),
            for_update=True,
        )
        try:
            domain.check_tier_change(
                current_tier=old_code,
                new_tier=command.tier,
                starts_on=membership.starts_on,
                ends_on=membership.ends_on,
                effective_on=command.effective_on,
                tiers=self.catalog.tiers,
            )
            self.catalog.price(command.tier, financial_year(command.effective_on))
            documents_due = tier_change_documents(
                self.catalog, before, change, list(billed), self.catalog.refund_leavers
            )
        except (domain.MembershipError, domain.CatalogError) as error:
            raise _refused(error) from None
        who = invoicing.Billed.member(member, membership)
        documents: list[str] = []
        for year, credit, invoice in documents_due:
            common = {
                "billed": who,
                "issued_on": self.today(),
                "due_days": self.settings.invoice_due_days,
            }
            # The new tier's invoice first, so that what the credit note leaves over
            # once the old invoice is settled goes against it.
            issued = await invoicing.issue(
                ctx.session, ctx.publish, invoice, tier=command.tier, **common
            )
            new_invoice = await ctx.session.get(Invoice, issued["id"])
            assert new_invoice is not None
            note = await invoicing.issue(
                ctx.session,
                ctx.publish,
                credit,
                tier=old_code,
                credits=billed[year],
                against=[billed[year], new_invoice],
                **common,
            )
            documents += [
                store.display_number(note["series"], note["number"]),
                store.display_number(issued["series"], issued["number"]),
            ]
        ctx.session.add(
            store.TierChange(
                membership_id=membership.id,
                old_tier=old_code,
                new_tier=command.tier,
                effective_on=command.effective_on,
                recorded_at=self.clock(),
            )
        )
        # The membership's own tier is the one it ends up at, once every change is in force.
        membership.tier = before.with_change(change).tier_on(date.max)
        await ctx.record_action(
            "change_tier",
            target=member.name,
            filters={
                "member_id": member.id,
                "tier": command.tier,
                "effective_on": command.effective_on.isoformat(),
            },
            result={"old_tier": old_code, "documents": documents},
        )
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
        """End a membership on its last day. Credit the unused months of a billed year if
        the catalog refunds leavers, and any later year billed in advance in full."""
        self._in_bounds(lambda: self.bounds.check_date(command.leaves_on, "leaves_on"))
        member, membership = await self._member(ctx.session, command.member)
        membership = await store.membership_for_update(ctx.session, membership.id)  # as above
        try:
            domain.check_leaving(
                starts_on=membership.starts_on,
                ends_on=membership.ends_on,
                leaves_on=command.leaves_on,
            )
        except domain.MembershipError as error:
            raise _refused(error) from None
        before = await store.timeline_of(ctx.session, membership)
        billed = await store.live_recurring_invoices(  # locked, as in change_tier
            ctx.session,
            membership.id,
            from_year=financial_year(command.leaves_on),
            for_update=True,
        )
        try:
            credits_due = leaving_documents(
                self.catalog, before, command.leaves_on, list(billed), self.catalog.refund_leavers
            )
        except domain.CatalogError as error:
            raise _refused(error) from None
        membership.ends_on = command.leaves_on
        documents: list[str] = []
        who = invoicing.Billed.member(member, membership)
        for year, credit in credits_due:
            row = await invoicing.issue(
                ctx.session,
                ctx.publish,
                credit,
                billed=who,
                issued_on=self.today(),
                due_days=self.settings.invoice_due_days,
                tier=credit.lines[0].tier,
                credits=billed[year],
            )
            documents.append(store.display_number(row["series"], row["number"]))
        await ctx.record_action(
            "leave_member",
            target=member.name,
            filters={"member_id": member.id, "leaves_on": command.leaves_on.isoformat()},
            result={"documents": documents},
        )
        await ctx.publish(
            MembershipEnded(
                membership_id=membership.id,
                member_id=member.id,
                member_name=member.name,
                ends_on=command.leaves_on,
            )
        )
        return {"member_id": member.id, "documents": documents}

    async def change_billing_contact(
        self, command: ChangeBillingContact, ctx: CommandContext
    ) -> dict[str, Any]:
        """Change the billing email, address or purchase-order reference; publish the change.

        Invoices already issued keep the contact they were issued with."""
        member, membership = await self._member(ctx.session, command.member)
        if (command.billing_email, command.billing_address, command.purchase_order) == (
            None,
            None,
            None,
        ):
            raise Refused(
                "invalid",
                "give a billing email, a billing address or a purchase-order reference",
                "member",
            )
        previous = membership.billing_email
        if command.billing_email is not None:
            membership.billing_email = str(command.billing_email).lower()
        if command.billing_address is not None:
            membership.billing_address = _one_line(command.billing_address) or None
        if command.purchase_order is not None:
            member.reference = command.purchase_order.strip() or None
        await ctx.record_action(
            "change_billing_contact",
            target=member.name,
            filters={
                "member_id": member.id,
                "changed": [
                    name
                    for name in ("billing_email", "billing_address", "purchase_order")
                    if getattr(command, name) is not None
                ],
            },
        )
        await ctx.publish(
            BillingContactChanged(
                membership_id=membership.id,
                member_id=member.id,
                member_name=member.name,
                billing_email=membership.billing_email,
                previous_billing_email=previous,
                billing_address=membership.billing_address,
                purchase_order=member.reference,
            )
        )
        return {
            "member_id": member.id,
            "billing_email": membership.billing_email,
            "billing_address": membership.billing_address,
            "purchase_order": member.reference,
        }

    async def rejoin_member(self, command: RejoinMember, ctx: CommandContext) -> dict[str, Any]:
        """A member that left starts a new membership; publish MembershipStarted.

        It pays from its joining day, unless its last membership already paid for the
        months it rejoins in."""
        self._in_bounds(lambda: self.bounds.check_date(command.joined_on, "joined_on"))
        member, last = await self._member(ctx.session, command.member)
        try:
            domain.check_rejoining(
                name=member.name, ends_on=last.ends_on, joined_on=command.joined_on
            )
            # A tier still offered: one whose prices have all ended takes nobody back.
            self.catalog.price(command.tier, financial_year(command.joined_on))
        except (domain.MembershipError, domain.CatalogError) as error:
            raise _refused(error) from None
        assert last.ends_on is not None
        pays_from = pays_from_on_rejoining(
            left_on=last.ends_on,
            joined_on=command.joined_on,
            refund_leavers=self.catalog.refund_leavers,
        )
        membership = Membership(
            id=str(uuid.uuid4()),
            member_id=member.id,
            tier=command.tier,
            billing_email=str(command.billing_email or last.billing_email).lower(),
            billing_address=last.billing_address,
            starts_on=command.joined_on,
            billing_starts_on=pays_from if pays_from != command.joined_on else None,
        )
        ctx.session.add(membership)
        await ctx.session.flush()
        await ctx.record_action(
            "rejoin_member",
            target=member.name,
            filters={
                "member_id": member.id,
                "tier": command.tier,
                "joined_on": command.joined_on.isoformat(),
            },
            result={"membership_id": membership.id, "pays_from": pays_from.isoformat()},
        )
        await ctx.publish(
            MembershipStarted(
                membership_id=membership.id,
                member_id=member.id,
                member_name=member.name,
                tier=membership.tier,
                billing_email=membership.billing_email,
                starts_on=membership.starts_on,
            )
        )
        return {
            "member_id": member.id,
            "membership_id": membership.id,
            "pays_from": pays_from.isoformat(),
        }

    async def list_members(self, command: ListMembers, ctx: CommandContext) -> dict[str, Any]:
        """Every member with its current tier; changes nothing."""
        query = (
            select(Member, Membership)
            .join(Membership, Membership.member_id == Member.id)
            .order_by(Member.name)
        )
        today = self.today()
        latest: dict[str, tuple[Member, Membership]] = {}  # a rejoined member: its latest
        for member, membership in await ctx.session.execute(query):
            if member.id not in latest or membership.starts_on > latest[member.id][1].starts_on:
                latest[member.id] = (member, membership)
        members = [
            {
                "member_id": member.id,
                "name": member.name,
                "tier": membership.tier,
                "billing_email": membership.billing_email,
                "starts_on": membership.starts_on.isoformat(),
                "ends_on": membership.ends_on.isoformat() if membership.ends_on else None,
                # Changes take effect on their dates: a member that joins later or has
                # left is not current today.
                "current": membership.starts_on <= today
                and (membership.ends_on is None or membership.ends_on >= today),
            }
            for member, membership in latest.values()
            if not command.tier or membership.tier == command.tier
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
            "billing_address": membership.billing_address,
            "purchase_order": member.reference,
            "starts_on": membership.starts_on.isoformat(),
            "ends_on": membership.ends_on.isoformat() if membership.ends_on else None,
            "memberships": [
                {
                    "membership_id": m.id,
                    "starts_on": m.starts_on.isoformat(),
                    "ends_on": m.ends_on.isoformat() if m.ends_on else None,
                    "pays_from": m.pays_from.isoformat(),
                }
                for m in await store.memberships_of(ctx.session, member.id)
            ],
            "tier_today": (await store.timeline_of(ctx.session, membership)).tier_on(self.today()),
            "tier_changes": [
                {
                    "effective_on": change.effective_on.isoformat(),
                    "old_tier": change.old_tier,
                    "new_tier": change.new_tier,
                }
                for change in (await store.tier_changes_of(ctx.session, [membership.id])).get(
                    membership.id, []
                )
            ],
            "documents": [invoice_summary_row(d) for d in documents],
        }

    # Invoicing runs

    async def run_invoicing(self, command: RunInvoicing, ctx: CommandContext) -> dict[str, Any]:
        """Preview a year's run (dry run), or record a run for the runner and answer its id.

        Refused for a year outside the books' window, or a run dated more than the grace
        period in the past."""
        issued_on = command.issued_on or self.today()
        self._in_bounds(
            lambda: self.bounds.check_year(command.year),
            lambda: (
                None if command.dry_run else self.bounds.check_run_date(issued_on, self.today())
            ),
        )
        try:
            if command.dry_run:
                preview = await invoicing.preview(ctx.session, self.catalog, command.year)
                await ctx.record_action(
                    "run_invoicing",
                    target=str(command.year),
                    filters={"year": command.year},
                    result={key: preview[key] for key in ("to_issue", "already_billed", "gross")},
                    dry_run=True,
                )
                return preview
            run = await invoicing.request_run(
                ctx.session,
                self.catalog,
                year=command.year,
                issued_on=issued_on,
                now=self.clock(),
                lease_s=self.settings.invoice_run_lease_s,
            )
        except domain.CatalogError as error:
            raise _refused(error) from None
        except invoicing.RunBusy as busy:
            raise Refused("busy", str(busy), "year") from None
        if self.runner is not None:  # the runner looks again once this has committed
            asyncio.get_running_loop().call_later(0.01, self.runner.wake)
        record = invoicing.run_record(run)
        await ctx.record_action(
            "run_invoicing",
            target=str(command.year),
            filters={"year": command.year, "issued_on": issued_on.isoformat()},
            result={"run_id": record.get("run_id"), "status": record.get("status")},
        )
        return record

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
                Invoice.gross_pence > Invoice.paid_pence + Invoice.credited_pence,
            )
        elif command.status:
            query = query.where(Invoice.status == command.status)
        return {"invoices": [invoice_summary_row(i) for i in await ctx.session.scalars(query)]}

    async def show_invoice(self, command: ShowInvoice, ctx: CommandContext) -> dict[str, Any]:
        """One invoice or credit note with its lines, payments and credits, and the HTML
        of its document if asked; changes nothing."""
        invoice = await self._document(ctx.session, command.number)
        document = await invoice_document(ctx.session, invoice)
        if command.html:
            document["html"] = invoice_html(document, self.supplier)
        return document

    async def show_document(self, command: ShowDocument, ctx: CommandContext) -> dict[str, Any]:
        """An invoice or credit note as the file its billing contact receives; changes
        nothing. The same document always gives the same bytes."""
        invoice = await self._document(ctx.session, command.number)
        html = invoice_html(await invoice_document(ctx.session, invoice), self.supplier)
        rendered = await as_file(
            html,
            name=invoice.display_number,
            format=command.format,
            identifier=pdf_identifier(invoice.kind, invoice.display_number),
        )
        return {"number": invoice.display_number, "kind": invoice.kind, **rendered.answer()}

    async def show_statement(self, command: ShowStatement, ctx: CommandContext) -> dict[str, Any]:
        """A member's statement of account as at a day, and its document if asked;
        changes nothing."""
        on = command.on or self.today()
        self._in_bounds(lambda: self.bounds.check_date(on, "on"))
        member, membership = await self._member(ctx.session, command.member)
        answer = await accounts.statement_of(ctx.session, member, membership, on)
        if command.format is not None:
            rendered = await as_file(
                statement_html(answer, self.supplier),
                name=f"statement-{_file_name(member.name)}-{on.isoformat()}",
                format=command.format,
                identifier=pdf_identifier("statement", member.id, on.isoformat()),
            )
            answer["document"] = rendered.answer()
        return answer

    async def _document(self, session: Any, number: str) -> Invoice:
        invoice = await store.find_invoice(session, number)
        if invoice is None:
            raise Refused("not_found", f"no invoice or credit note {number}", "number")
        return invoice

    async def invoice_summary(self, command: InvoiceSummary, ctx: CommandContext) -> dict[str, Any]:
        """A year's figures by tier (invoices, billed net, VAT and gross, credited, paid,
        outstanding) and what is outstanding by age, in all and by tier; void invoices
        count nowhere. The aged buckets add up to the outstanding total."""
        on = command.on or self.today()
        self._in_bounds(
            lambda: self.bounds.check_year(command.year), lambda: self.bounds.check_date(on, "on")
        )
        figures = ("invoices", "net", "vat", "billed", "credited", "paid", "outstanding")
        tiers: dict[str, dict[str, Any]] = {}
        debts: dict[str, list[tuple[date, int]]] = {}
        rows = await ctx.session.execute(
            select(
                Invoice.tier,
                Invoice.kind,
                Invoice.status,
                Invoice.due_on,
                Invoice.net_pence,
                Invoice.vat_pence,
                Invoice.gross_pence,
                Invoice.paid_pence,
                Invoice.credited_pence,
            ).where(Invoice.year == command.year)
        )
        for tier, kind, status, due_on, net, vat, gross, paid, credited in rows:
            code = tier or "(events)"
            row = tiers.setdefault(code, {"tier": code, **dict.fromkeys(figures, 0)})
            if status == "void":
                continue
            if kind == "credit_note":
                row["credited"] += gross
                continue
            outstanding = billing.balance(gross, paid, credited)
            row["invoices"] += 1
            row["net"] += net
            row["vat"] += vat
            row["billed"] += gross
            row["paid"] += paid
            row["outstanding"] += outstanding
            # Every invoice has a due date; one without would be owed but never aged.
            debts.setdefault(code, []).append((due_on or on, outstanding))
        by_tier = [tiers[code] for code in sorted(tiers)]
        for row in by_tier:
            row["aged"] = accounts_rules.aged(debts.get(row["tier"], []), on)
        return {
            "year": command.year,
            "on": on.isoformat(),
            "tiers": by_tier,
            "totals": {key: sum(row[key] for row in by_tier) for key in figures},
            "aged": accounts_rules.aged(
                (debt for code in sorted(debts) for debt in debts[code]), on
            ),
        }

    # Payments

    async def record_payment(self, command: RecordPayment, ctx: CommandContext) -> dict[str, Any]:
        """Record money against an invoice; refuse more than its balance (total less
        payments less credits)."""
        self._in_bounds(
            lambda: self.bounds.check_date(command.received_on, "received_on"),
            lambda: self.bounds.check_amount(command.amount.amount_minor, "amount"),
        )
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
                credited_pence=invoice.credited_pence,
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
        invoice.status = billing.status_of(
            invoice.gross_pence, invoice.paid_pence, invoice.credited_pence
        )
        await ctx.publish(
            InvoicePaid(
                invoice_id=invoice.id,
                number=invoice.display_number,
                payment_id=payment.id,
                amount=command.amount,
                outstanding=Money(amount_minor=outstanding),
                fully_paid=outstanding == 0,
                received_on=command.received_on,
                billing_email=await store.billing_email_now(ctx.session, invoice),
            ),
            id=derived_message_id("InvoicePaid", payment.id),
        )
        await ctx.record_action(
            "record_payment",
            target=invoice.display_number,
            filters={
                "amount": command.amount.model_dump(mode="json"),
                "received_on": command.received_on.isoformat(),
            },
            result={
                "payment_id": payment.id,
                "status": invoice.status,
                "outstanding": outstanding,
            },
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
        if invoice.credited_pence:
            raise Refused(
                "credited",
                f"invoice {invoice.display_number} has credit notes set against it; "
                "credit what remains instead of voiding it",
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
        await ctx.record_action(
            "void_invoice", target=invoice.display_number, result={"status": "void"}
        )
        return {"invoice": invoice.display_number, "status": "void"}

    async def reissue_invoice(self, command: ReissueInvoice, ctx: CommandContext) -> dict[str, Any]:
        """Bill the member again for the year of a void yearly invoice, under the next number.

        The new invoice is what a run would issue now; the store's unique index on live
        yearly invoices refuses a second one, as it does a run's.
        """
        void = await store.find_invoice(ctx.session, command.invoice, for_update=True)
        if void is None or void.kind != "invoice":
            raise Refused("not_found", f"no invoice {command.invoice}", "invoice")
        number = void.display_number
        if void.status != "void":
            raise Refused("invalid", f"invoice {number} is not void; void it first", "invoice")
        if void.purpose != "recurring" or void.membership_id is None:
            raise Refused(
                "invalid",
                f"invoice {number} is not a yearly subscription invoice; "
                "only those are billed again",
                "invoice",
            )
        live = await store.recurring_invoice(ctx.session, void.membership_id, void.year)
        if live is not None:
            raise Refused(
                "conflict",
                f"invoice {live.display_number} already bills {live.billed_name} for {void.year}",
                "invoice",
            )
        membership = await ctx.session.get(Membership, void.membership_id)
        member = await ctx.session.get(Member, membership.member_id) if membership else None
        if membership is None or member is None:
            raise Refused("not_found", f"the member billed by {number} is gone", "invoice")
        try:
            charge = yearly_charge(
                self.catalog,
                await store.timeline_of(ctx.session, membership),
                void.year,
                self.catalog.refund_leavers,
            )
        except domain.CatalogError as error:
            raise _refused(error) from None
        if charge is None:
            raise Refused(
                "invalid", f"{member.name} owes nothing for {void.year}: nothing to bill", "invoice"
            )
        row = await invoicing.issue(
            ctx.session,
            ctx.publish,
            charge,
            billed=invoicing.Billed.member(member, membership),
            issued_on=self.today(),
            due_days=self.settings.invoice_due_days,
            tier=charge.lines[0].tier,
            replaces_invoice_id=void.id,
        )
        await ctx.record_action(
            "reissue_invoice",
            target=number,
            result={
                "invoice": store.display_number(row["series"], row["number"]),
                "gross": row["gross_pence"],
            },
        )
        return {
            "invoice": store.display_number(row["series"], row["number"]),
            "replaces": number,
            "gross": row["gross_pence"],
        }

    # Facts from events

    async def booking_chargeable(self, fact: BookingChargeable, ctx: HandlerContext) -> None:
        """Invoice a chargeable booking once: to the member if there is one, else the booker.

        A fee above the ceiling, or an event outside the books' dates, is not billed: the
        handler fails, so the fact is retried and then dead-lettered for an operator.

        The booker is named on the line, apart from its description, unless they have been
        erased (the fact then carries stand-ins): the fee is still billed, naming nobody."""
        starts = fact.event_starts_at.astimezone(LONDON).date()
        try:
            self.bounds.check_amount(fact.fee.amount_minor, "fee")
            self.bounds.check_date(starts, "event_starts_at")
        except billing.BillingError as error:
            # In pence and plain ASCII: the dead letter carries it in a header.
            raise billing.BillingError(
                error.code,
                f"booking {fact.booking_id} not billed: its {error.field} is out of range "
                f"(fee {fact.fee.amount_minor} pence, event on {starts}; the books take up to "
                f"{self.bounds.max_amount_pence} pence, {self.bounds.earliest_year}"
                f"-{self.bounds.latest_year})",
                error.field,
            ) from None
        if await ctx.session.scalar(
            select(Invoice.id).where(
                Invoice.booking_id == fact.booking_id, Invoice.kind == "invoice"
            )
        ):
            return
        member = await ctx.session.get(Member, fact.member_id) if fact.member_id else None
        if member is not None:
            _, membership = await self._member(ctx.session, member.id)
            who = invoicing.Billed.member(member, membership, yearly=False)
        else:
            who = invoicing.Billed(
                None, None, fact.organisation_name or fact.booker_name, str(fact.booker_email)
            )
        charge = Charge(
            "invoice",
            "booking",
            financial_year(starts),
            (
                Line(
                    # The booker is named apart: the description goes out in the
                    # invoice's facts, and erasure must be able to clear the name alone.
                    f"{fact.event_title}, {starts:%-d %b %Y}: a place (booking {fact.reference})",
                    None,
                    0,
                    fact.fee.amount_minor,
                    self.settings.booking_vat_basis_points,
                    *booker_to_keep(fact.booker_name, str(fact.booker_email)),
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
                    line.booker_name,
                    line.booker_email,
                )
                for line in lines
            ),
        )
        await invoicing.issue(
            ctx.session,
            ctx.publish,
            charge,
            billed=invoicing.Billed(
                invoice.member_id,
                None,
                invoice.billed_name,
                invoice.billing_email,
                invoice.billing_address,
                invoice.purchase_order,
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


def _one_line(address: str) -> str:
    """An address as one line of comma-separated parts, however it was typed."""
    parts = [part.strip() for line in address.splitlines() for part in line.split(",")]
    return ", ".join(part for part in parts if part)


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
        "billing_address": invoice.billing_address,
        "purchase_order": invoice.purchase_order,
        "issued_on": invoice.issued_on.isoformat(),
        "due_on": invoice.due_on.isoformat() if invoice.due_on else None,
        "net": invoice.net_pence,
        "vat": invoice.vat_pence,
        "gross": invoice.gross_pence,
        "paid": invoice.paid_pence,
        "credited": invoice.credited_pence,
        "outstanding": invoice.balance_pence,
        "status": invoice.status,
        "booking_id": invoice.booking_id,
    }


async def invoice_document(session: Any, invoice: Invoice) -> dict[str, Any]:
    """An invoice or credit note with its lines, payments and credits: ShowInvoice's answer,
    and what its document is rendered from."""
    lines = await store.lines_of(session, invoice.id)
    payments = await session.scalars(
        select(Payment).where(Payment.invoice_id == invoice.id).order_by(Payment.received_on)
    )
    credits = None
    if invoice.credits_invoice_id:
        credited = await session.get(Invoice, invoice.credits_invoice_id)
        credits = credited.display_number if credited else None
    replaces = (
        await session.get(Invoice, invoice.replaces_invoice_id)
        if invoice.replaces_invoice_id
        else None
    )
    allocations = await store.allocations_of(session, invoice)
    return {
        **invoice_summary_row(invoice),
        "credits_invoice": credits,
        "replaces_invoice": replaces.display_number if replaces else None,
        # An invoice: the credit notes set against it. A credit note: the
        # invoices it was set against, and what is left on the member's account.
        "allocations": allocations,
        "unallocated": invoice.gross_pence - sum(a["amount"] for a in allocations)
        if invoice.kind == "credit_note"
        else 0,
        "lines": [
            {
                "description": line.description,
                # Who booked the place, on a booking's line; none once erased.
                "booker": line.booker_name,
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


def _file_name(name: str) -> str:
    """A member's name as part of a file name: 'Bury Council' → 'bury-council'."""
    return "-".join("".join(c if c.isalnum() else " " for c in name.lower()).split()) or "member"


async def count_invoices(session: Any, year: int | None = None) -> int:
    query = select(func.count()).select_from(Invoice).where(Invoice.kind == "invoice")
    if year is not None:
        query = query.where(Invoice.year == year)
    return await session.scalar(query) or 0
