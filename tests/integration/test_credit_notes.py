"""Credit notes set against the invoices they credit, on SQLite and PostgreSQL: an
invoice's balance is its total less payments less credits; one credited in full is
settled and never chased, one credited in part is chased for what remains, a payment
cannot exceed the balance, and the billing contact receives each credit note."""

from __future__ import annotations

from datetime import date

import pytest
from nats.aio.client import Client

from contracts.subscriptions_v1 import (
    ChangeTier,
    InvoiceSummary,
    ListInvoices,
    ShowInvoice,
    VoidInvoice,
)
from kernel.commands import CommandFailed, request
from kernel.settings import Settings
from services.notifications.app import create_service as notifications_service
from tests.conftest import Mailbox, eventually
from tests.finance_support import Clock, facts_on, invoice_of, pay
from tests.notifications_support import quick
from tests.subscriptions_helpers import enrol_reference, run_to_end, subscriptions

YEAR_START = date(2008, 4, 1)


@pytest.fixture
def store_services() -> tuple[str, ...]:
    return ("subscriptions",)


async def test_a_credited_invoice_is_settled_and_a_part_credited_one_chased_for_what_remains(
    store_settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    clock = Clock(YEAR_START)
    async with (
        subscriptions(store_settings, clock=clock) as service,
        notifications_service(quick(store_settings)).running(),
    ):
        await enrol_reference(nc)
        await run_to_end(nc, 2008, issued_on=YEAR_START)  # due 1 May 2008
        yearly = (await request(nc, ListInvoices(year=2008)))["invoices"]
        bolton = await invoice_of(nc, "Bolton Council", yearly)  # upper tier, £9,000
        burnley = await invoice_of(nc, "Burnley Borough Council", yearly)  # district, £2,000
        bury = await invoice_of(nc, "Bury Council", yearly)  # upper tier, £9,000
        clock.on(date(2008, 4, 5))
        await request(nc, pay(bury["number"], 900_000, date(2008, 4, 5), "BACS 1"))

        clock.on(date(2008, 4, 10))
        # Bolton moves down from the first day of the year: its whole invoice is credited.
        down = await request(
            nc, ChangeTier(member="Bolton Council", tier="district", effective_on=YEAR_START)
        )
        # Burnley moves up from October: half its invoice is credited.
        up = await request(
            nc,
            ChangeTier(
                member="Burnley Borough Council", tier="upper-tier", effective_on=date(2008, 10, 1)
            ),
        )
        # Bury, paid in full, moves down from October: its credit settles the new
        # district invoice and the rest is held for Bury.
        paid_down = await request(
            nc, ChangeTier(member="Bury Council", tier="district", effective_on=date(2008, 10, 1))
        )
        assert [down["documents"], up["documents"], paid_down["documents"]] == [
            ["CN-000001", "INV-000046"],
            ["CN-000002", "INV-000047"],
            ["CN-000003", "INV-000048"],
        ]

        bolton = await request(nc, ShowInvoice(number=bolton["number"]))
        assert (bolton["status"], bolton["credited"], bolton["outstanding"]) == (
            "credited",
            900_000,
            0,
        )
        assert bolton["allocations"] == [
            {"number": "CN-000001", "amount": 900_000, "on": "2008-04-10"}
        ]
        burnley = await request(nc, ShowInvoice(number=burnley["number"]))
        assert (burnley["status"], burnley["credited"], burnley["outstanding"]) == (
            "issued",
            100_000,
            100_000,
        )
        bury = await request(nc, ShowInvoice(number=bury["number"]))
        assert (bury["status"], bury["credited"], bury["outstanding"]) == ("paid", 0, 0)
        held = await request(nc, ShowInvoice(number="CN-000003"))
        assert (held["gross"], held["allocations"], held["unallocated"]) == (
            450_000,
            [{"number": "INV-000048", "amount": 100_000, "on": "2008-04-10"}],
            350_000,
        )
        bury_district = await request(nc, ShowInvoice(number="INV-000048"))
        assert (bury_district["status"], bury_district["outstanding"]) == ("credited", 0)
        # The credit note's own document names the invoice it credits; the invoice's
        # document stays as it was issued (the statement shows what was set against it).
        html = (await request(nc, ShowInvoice(number="CN-000001", html=True)))["html"]
        assert f"<dt>Credits invoice</dt><dd>{bolton['number']}</dd>" in html

        # The store refuses money beyond the balance: the credit counts as settled.
        with pytest.raises(CommandFailed) as over:
            await request(nc, pay(burnley["number"], 100_001, date(2008, 4, 20)))
        assert (over.value.error.code, over.value.error.field) == ("overpayment", "amount")
        assert "£1,000.01 is more than the £1,000.00 outstanding" in over.value.error.message
        with pytest.raises(CommandFailed) as settled:
            await request(nc, pay(bolton["number"], 1, date(2008, 4, 20)))
        assert settled.value.error.code == "credited"
        with pytest.raises(CommandFailed) as void:
            await request(nc, VoidInvoice(invoice=bolton["number"], reason="raised in error"))
        assert void.value.error.code == "credited"

        # The overdue sweep chases balances only: not Bolton (credited) nor Bury (paid),
        # and Burnley for the £1,000 that remains.
        clock.on(date(2008, 5, 2))
        automation = service.automation  # type: ignore[attr-defined]
        assert (await automation.tick())["reminders"] == 43
        clock.on(date(2008, 5, 11))  # the tier changes' invoices fell due on 10 May
        automation.swept_on = None
        assert (await automation.tick())["reminders"] == 2  # INV-000046 and INV-000047
        overdue = await eventually(
            lambda: _count(facts_on(nc, "subscriptions.invoice.overdue"), 45), what="reminders"
        )
        chased = {fact["number"]: fact["outstanding"]["amount_minor"] for fact in overdue}
        assert bolton["number"] not in chased and bury["number"] not in chased
        assert "INV-000048" not in chased
        assert chased[burnley["number"]] == 100_000
        assert (chased["INV-000046"], chased["INV-000047"]) == (200_000, 450_000)

        summary = await request(nc, InvoiceSummary(year=2008, on=date(2008, 5, 11)))
        assert summary["totals"]["outstanding"] == sum(
            i["outstanding"] for i in (await request(nc, ListInvoices(year=2008)))["invoices"]
        )

        # Each credit note reaches the billing contact, saying what it credits.
        # ... after the year's 45 invoices, each printed to PDF for its email.
        mails = await eventually(
            lambda: _credit_note_mails(mailbox, 3), timeout=60, what="credit notes"
        )
        by_to = {mail.to: mail for mail in mails}
        bolton_mail = by_to["accounts@bolton-council.example.gov.uk"]
        assert bolton_mail.subject.endswith(f"£9,000.00 against invoice {bolton['number']}")
        assert "the months at your previous tier" in bolton_mail.text()
        assert "CN-000003" in by_to["accounts@bury-council.example.gov.uk"].subject


async def _count(facts, expected: int):  # type: ignore[no-untyped-def]
    found = await facts
    return found if len(found) == expected else None


def _credit_note_mails(mailbox: Mailbox, expected: int):  # type: ignore[no-untyped-def]
    mails = [m for m in mailbox.mails() if m.subject.startswith("Credit note")]
    return mails if len(mails) == expected else None
