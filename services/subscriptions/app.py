"""The subscriptions service as a FastStream app: commands in, facts out."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from contracts import subscriptions_v1 as messages
from contracts.events_v1 import BookingCancelled, BookingChargeable
from contracts.people_v1 import ExportPersonFromSubscriptions, PersonErasureRequested
from kernel.calling_out import command_calling_out
from kernel.runtime import Service
from kernel.settings import Settings
from services.subscriptions import (
    NAME,
    card_payments,
    exports,
    govuk_pay,
    invoicing,
    people,
    sweeps,
)
from services.subscriptions.handlers import Clock, Subscriptions, utc_now
from services.subscriptions.settings import BillingSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_service(
    settings: Settings | None = None,
    *,
    billing: BillingSettings | None = None,
    clock: Clock = utc_now,
) -> Service:
    service = Service(NAME, migrations_dir=MIGRATIONS, settings=settings)
    billing = billing or BillingSettings()
    catalog = billing.catalog()
    runner = invoicing.Runner(
        service.sessions,
        catalog,
        clock,
        due_days=billing.invoice_due_days,
        chunk=billing.invoice_run_chunk,
        pause_s=billing.invoice_run_pause_s,
        lease_s=billing.invoice_run_lease_s,
        on_commit=service.wake_relay,
    )
    handlers = Subscriptions(billing, catalog, clock, runner)
    automation = sweeps.Automation(
        service.sessions,
        catalog,
        clock,
        day=billing.invoicing_day,
        at=billing.invoicing_time,
        lease_s=billing.invoice_run_lease_s,
        on_run=runner.wake,
        on_commit=service.wake_relay,
    )

    for model, handler in (
        (messages.JoinMember, handlers.join_member),
        (messages.ImportMembers, handlers.import_members),
        (messages.ChangeTier, handlers.change_tier),
        (messages.LeaveMember, handlers.leave_member),
        (messages.ChangeBillingContact, handlers.change_billing_contact),
        (messages.RejoinMember, handlers.rejoin_member),
        (messages.RunInvoicing, handlers.run_invoicing),
        (messages.RecordPayment, handlers.record_payment),
        (messages.VoidInvoice, handlers.void_invoice),
        (messages.ReissueInvoice, handlers.reissue_invoice),
        (ExportPersonFromSubscriptions, people.export_person),
    ):
        service.command(model)(handler)
    # Queries take no write lock: printing a run's documents for the emails (a PDF is
    # CPU work of a second or so) must not hold the finance officer's pages up.
    for model, handler in (
        (messages.ListMembers, handlers.list_members),
        (messages.ShowMember, handlers.show_member),
        (messages.InvoiceRunStatus, handlers.invoice_run_status),
        (messages.ListInvoices, handlers.list_invoices),
        (messages.ShowInvoice, handlers.show_invoice),
        (messages.ShowDocument, handlers.show_document),
        (messages.ShowStatement, handlers.show_statement),
        (messages.InvoiceSummary, handlers.invoice_summary),
    ):
        service.command(model, reads_only=True)(handler)
    paying = card_payments.CardPayments(
        service.sessions, govuk_pay.provider_from(service.settings), billing, clock
    )
    service.command(messages.ShowPaymentDue)(paying.show_payment_due)
    service.command(messages.ExportBooks)(
        partial(exports.export_books, coding=exports.coding_of(billing))
    )
    # These call the card payment provider, outside any transaction, before recording.
    command_calling_out(service, messages.StartCardPayment, paying.prepare_start)
    command_calling_out(service, messages.CheckCardPayment, paying.prepare_check)
    service.consume(BookingChargeable)(handlers.booking_chargeable)
    service.consume(BookingCancelled)(handlers.booking_cancelled)
    service.consume(PersonErasureRequested)(people.erase_person)

    async def run_invoicing(_: Service) -> None:
        await runner.run_forever(poll_s=0.25)

    service.worker(run_invoicing)
    if billing.automation:

        async def automate(_: Service) -> None:
            await automation.run_forever(billing.automation_tick_s)

        service.worker(automate)
    service.runner = runner  # type: ignore[attr-defined]
    service.automation = automation  # type: ignore[attr-defined]
    return service
