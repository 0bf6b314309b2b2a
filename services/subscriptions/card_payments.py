"""Paying an invoice online by card: what is due, starting a payment with the provider,
and checking how it stands, recording it once when it succeeded.

The provider is called with no transaction open (``kernel.calling_out``): ``prepare_*``
read what they need, call out, and return the handler that records what the provider
said in one transaction. Whatever reaches that handler first (the person's return, a
webhook, a second webhook, another replica) locks the invoice's row, finds whether
the provider's payment is already recorded, and records it if not; the unique index
on ``payments.provider_payment_id`` holds that even against a handler that did not
look. A payment that failed, was cancelled or expired records nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts.envelope import derived_message_id
from contracts.money import Money
from contracts.subscriptions_v1 import (
    CheckCardPayment,
    InvoicePaid,
    ShowPaymentDue,
    StartCardPayment,
)
from kernel.commands import CommandContext, CommandHandler, Refused
from services.subscriptions import store
from services.subscriptions.domain import billing
from services.subscriptions.domain.card_payments import outcome_of, why_not_by_card
from services.subscriptions.govuk_pay import (
    CardPaymentProvider,
    CardPaymentRefused,
    CardPaymentsUnavailable,
    PaymentNotFound,
    PaymentState,
)
from services.subscriptions.settings import BillingSettings
from services.subscriptions.store import CardPayment, Invoice, Payment

log = logging.getLogger(__name__)
LONDON = ZoneInfo("Europe/London")

UNAVAILABLE = (
    "Card payments are not working at the moment. Try again in a few minutes, or pay by "
    "bank transfer. Nothing was taken or changed"
)


@dataclass
class CardPayments:
    sessions: async_sessionmaker[AsyncSession]
    provider: CardPaymentProvider | None
    settings: BillingSettings
    clock: Callable[[], datetime]

    def today(self) -> date:
        return self.clock().astimezone(LONDON).date()

    # What is due

    async def show_payment_due(
        self, command: ShowPaymentDue, ctx: CommandContext
    ) -> dict[str, Any]:
        """An invoice's dues, for its payment page; changes nothing."""
        invoice = await _invoice(ctx.session, command.invoice)
        why_not = why_not_by_card(status=invoice.status, outstanding_pence=invoice.balance_pence)
        if why_not is None and self.provider is None:
            why_not = "This invoice cannot be paid by card: pay it by bank transfer"
        return {
            "invoice": invoice.display_number,
            "billed_name": invoice.billed_name,
            "issued_on": invoice.issued_on.isoformat(),
            "due_on": invoice.due_on.isoformat() if invoice.due_on else None,
            "gross": invoice.gross_pence,
            "paid": invoice.paid_pence,
            "credited": invoice.credited_pence,
            "outstanding": invoice.balance_pence,
            "status": invoice.status,
            "by_card": why_not is None,
            "why_not": why_not,
            "card_origin": self.provider.card_origin if self.provider else None,
            "payment_instructions": self.settings.payment_instructions,
        }

    # Starting a payment

    async def prepare_start(self, command: StartCardPayment) -> CommandHandler:
        """Cancel the invoice's card payments still in progress, then create one for what is
        outstanding; answer with the handler that records it (or an earlier one that, it
        turns out, was paid)."""
        provider = self._provider()
        async with self.sessions() as session:
            invoice = await _invoice(session, command.invoice)
            why_not = why_not_by_card(
                status=invoice.status, outstanding_pence=invoice.balance_pence
            )
            if why_not:
                raise Refused("nothing_due", why_not, "invoice")
            outstanding = invoice.balance_pence
            number = invoice.display_number
            earlier = list(
                await session.scalars(
                    select(CardPayment).where(
                        CardPayment.invoice_id == invoice.id,
                        CardPayment.finished.is_(False),
                        CardPayment.id != command.card_payment,
                    )
                )
            )
        seen: list[PaymentState] = []
        try:
            for attempt in earlier:
                try:
                    if not await provider.cancel(attempt.provider_payment_id):
                        seen.append(await provider.status(attempt.provider_payment_id))
                except PaymentNotFound:  # another provider's, or a stand-in's since restarted
                    seen.append(_unknown(attempt))
            if any(state.status == "success" for state in seen):
                created = None  # an earlier attempt was paid: record it, start nothing
            else:
                created = await provider.create(
                    amount_pence=outstanding,
                    reference=number,
                    description=f"Invoice {number} from {self.settings.partnership_name}"[:255],
                    return_url=command.return_url,
                    idempotency_key=command.card_payment,
                )
        except CardPaymentsUnavailable as down:
            log.warning("starting a card payment of %s: %s", number, down)
            raise Refused("unavailable", UNAVAILABLE) from None
        except CardPaymentRefused as refused:
            log.error("the card payment provider refused to start paying %s: %s", number, refused)
            raise Refused("unavailable", UNAVAILABLE) from None
        if created is not None and created.next_url is None:
            log.error("the provider gave no card page for %s", created.payment_id)
            raise Refused("unavailable", UNAVAILABLE)

        async def record(command: StartCardPayment, ctx: CommandContext) -> dict[str, Any]:
            invoice = await _invoice(ctx.session, command.invoice, for_update=True)
            paid_earlier = None
            for state in seen:
                attempt = await _attempt_by_provider_id(ctx.session, state.payment_id)
                if attempt is not None:
                    await self._apply(ctx, invoice, attempt, state)
                    if state.status == "success":
                        paid_earlier = attempt
            if created is None:
                assert paid_earlier is not None
                return {**self._answer(invoice, paid_earlier), "already_paid": True}
            if invoice.balance_pence != created.amount_pence:
                # Paid or credited meanwhile: the payment just created is never shown to
                # anyone and lapses at the provider; nothing can be taken through it.
                raise Refused(
                    "nothing_due",
                    why_not_by_card(status=invoice.status, outstanding_pence=invoice.balance_pence)
                    or "What is owed on this invoice has just changed: start again",
                    "invoice",
                )
            attempt = await ctx.session.get(CardPayment, command.card_payment)
            if attempt is None:
                attempt = CardPayment(
                    id=command.card_payment,
                    invoice_id=invoice.id,
                    provider=self._provider().name,
                    provider_payment_id=created.payment_id,
                    amount_pence=created.amount_pence,
                    status=created.status,
                    finished=created.finished,
                    created_at=self.clock(),
                )
                ctx.session.add(attempt)
            elif (attempt.provider_payment_id, attempt.invoice_id) != (
                created.payment_id,
                invoice.id,
            ):
                raise Refused("conflict", "that card payment id is taken", "card_payment")
            await ctx.record_action(
                "start_card_payment",
                target=invoice.display_number,
                filters={"amount": created.amount_pence},
                result={"card_payment": attempt.id, "provider_payment_id": created.payment_id},
            )
            return {
                **self._answer(invoice, attempt),
                "already_paid": False,
                "next_url": created.next_url,
                "card_origin": self._provider().card_origin,
            }

        return record

    # Checking a payment

    async def prepare_check(self, command: CheckCardPayment) -> CommandHandler:
        """Find the card payment, and ask the provider how it stands unless it has ended;
        answer with the handler that records what it said."""
        async with self.sessions() as session:
            if command.provider_payment_id is not None:
                attempt = await _attempt_by_provider_id(session, command.provider_payment_id)
            else:
                attempt = await session.get(CardPayment, command.card_payment)
                invoice = await store.find_invoice(session, command.invoice or "")
                if attempt is not None and (invoice is None or invoice.id != attempt.invoice_id):
                    attempt = None
            if attempt is None:
                raise Refused("not_found", "no card payment matches", "card_payment")
            attempt_id, provider_id = attempt.id, attempt.provider_payment_id
            invoice_id, ended = attempt.invoice_id, attempt.finished
        state = None
        if not ended:  # an ended payment's status does not change: no need to ask
            try:
                state = await self._provider().status(provider_id)
            except PaymentNotFound:
                log.error("the provider knows no payment %s", provider_id)
                raise Refused("not_found", "no card payment matches", "card_payment") from None
            except (CardPaymentsUnavailable, CardPaymentRefused) as down:
                log.warning("checking card payment %s: %s", provider_id, down)
                raise Refused("unavailable", UNAVAILABLE) from None

        async def record(command: CheckCardPayment, ctx: CommandContext) -> dict[str, Any]:
            # The invoice's row first, locked: a check racing this one (the return and a
            # webhook, on two replicas) waits here, then reads what this one recorded.
            invoice = await ctx.session.scalar(
                select(Invoice)
                .where(Invoice.id == invoice_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
            attempt = await ctx.session.scalar(
                select(CardPayment)
                .where(CardPayment.id == attempt_id)
                .execution_options(populate_existing=True)
            )
            assert invoice is not None and attempt is not None
            recorded = False
            if state is not None:
                recorded = await self._apply(ctx, invoice, attempt, state)
            return {**self._answer(invoice, attempt), "recorded": recorded}

        return record

    # Recording

    async def _apply(
        self, ctx: CommandContext, invoice: Invoice, attempt: CardPayment, state: PaymentState
    ) -> bool:
        """Keep what the provider said of ``attempt``; if it succeeded and is not recorded
        yet, record its payment against ``invoice`` (locked) and publish InvoicePaid.
        Whether this recorded it."""
        attempt.status = state.status
        attempt.finished = state.finished
        attempt.code = state.code
        attempt.message = (state.message or "")[:200] or None
        attempt.checked_at = self.clock()
        if state.status != "success" or attempt.payment_id is not None:
            return False
        already = await ctx.session.scalar(
            select(Payment.id).where(Payment.provider_payment_id == attempt.provider_payment_id)
        )
        if already is not None:
            attempt.payment_id = already
            return False
        try:
            outstanding = billing.check_payment(
                number=invoice.display_number,
                status=invoice.status,
                gross_pence=invoice.gross_pence,
                paid_pence=invoice.paid_pence,
                credited_pence=invoice.credited_pence,
                amount_pence=state.amount_pence,
            )
        except billing.BillingError as error:
            # The money was taken, but the invoice was settled meanwhile (by a transfer,
            # a credit note or another card): staff refund it.
            attempt.problem = f"not recorded: {error}"[:300]
            log.warning(
                "card payment %s of %s succeeded but was not recorded: %s",
                attempt.provider_payment_id,
                invoice.display_number,
                error,
            )
            return False
        received_on = self.today()
        payment = Payment(
            id=str(uuid.uuid4()),
            invoice_id=invoice.id,
            amount_pence=state.amount_pence,
            received_on=received_on,
            reference=f"Card payment {attempt.provider_payment_id}"[:100],
            recorded_at=self.clock(),
            provider_payment_id=attempt.provider_payment_id,
        )
        ctx.session.add(payment)
        invoice.paid_pence += state.amount_pence
        invoice.status = billing.status_of(
            invoice.gross_pence, invoice.paid_pence, invoice.credited_pence
        )
        await ctx.session.flush()
        attempt.payment_id = payment.id
        await ctx.publish(
            InvoicePaid(
                invoice_id=invoice.id,
                number=invoice.display_number,
                payment_id=payment.id,
                amount=Money(amount_minor=state.amount_pence),
                outstanding=Money(amount_minor=outstanding),
                fully_paid=outstanding == 0,
                received_on=received_on,
                billing_email=await store.billing_email_now(ctx.session, invoice),
            ),
            id=derived_message_id("InvoicePaid", payment.id),
        )
        await ctx.record_action(
            "record_card_payment",
            target=invoice.display_number,
            filters={"provider_payment_id": attempt.provider_payment_id},
            result={
                "payment_id": payment.id,
                "amount": state.amount_pence,
                "status": invoice.status,
                "outstanding": outstanding,
            },
        )
        return True

    def _answer(self, invoice: Invoice, attempt: CardPayment) -> dict[str, Any]:
        return {
            "invoice": invoice.display_number,
            "card_payment": attempt.id,
            "outcome": outcome_of(attempt.status, attempt.code),
            "amount": attempt.amount_pence,
            "outstanding": invoice.balance_pence,
            "status": invoice.status,
            "message": attempt.message,
            "problem": attempt.problem,
        }

    def _provider(self) -> CardPaymentProvider:
        if self.provider is None:
            raise Refused(
                "unavailable", "card payments are not set up: pay by bank transfer", "invoice"
            )
        return self.provider


async def _invoice(session: AsyncSession, number: str, *, for_update: bool = False) -> Invoice:
    invoice = await store.find_invoice(session, number, for_update=for_update)
    if invoice is None or invoice.kind != "invoice":
        raise Refused("not_found", f"no invoice {number}", "invoice")
    return invoice


def _unknown(attempt: CardPayment) -> PaymentState:
    """What to keep of an attempt the provider no longer knows: ended, nothing taken."""
    return PaymentState(
        payment_id=attempt.provider_payment_id,
        status="error",
        finished=True,
        amount_pence=attempt.amount_pence,
        message="The card payment provider knows no such payment",
    )


async def _attempt_by_provider_id(session: AsyncSession, provider_id: str) -> CardPayment | None:
    return await session.scalar(
        select(CardPayment).where(CardPayment.provider_payment_id == provider_id)
    )
