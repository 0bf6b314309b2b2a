"""Members' changes, on SQLite and PostgreSQL: a new billing contact (email, address,
purchase-order reference) reaches later invoices, receipts and reminders while issued
invoices keep theirs; a member that left rejoins and pays for each month once."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from nats.aio.client import Client

from contracts.subscriptions_v1 import (
    ChangeBillingContact,
    ChangeTier,
    JoinMember,
    LeaveMember,
    ListInvoices,
    ListMembers,
    RejoinMember,
    ShowInvoice,
    ShowMember,
)
from kernel.commands import CommandFailed, request
from kernel.settings import Settings
from tests.conftest import eventually
from tests.finance_support import Clock, facts_on, invoice_of, pay
from tests.subscriptions_helpers import enrol_reference, run_to_end, subscriptions

YEAR_START = date(2008, 4, 1)
OLD_EMAIL = "accounts@bury-council.example.gov.uk"
NEW_EMAIL = "payables@bury.example.gov.uk"


@pytest.fixture
def store_services() -> tuple[str, ...]:
    return ("subscriptions",)


async def test_a_new_billing_contact_is_on_later_documents_and_issued_ones_keep_theirs(
    store_settings: Settings, nc: Client
) -> None:
    clock = Clock(YEAR_START)
    async with subscriptions(store_settings, clock=clock) as service:
        await enrol_reference(nc)
        await run_to_end(nc, 2008)
        yearly = await invoice_of(
            nc, "Bury Council", (await request(nc, ListInvoices(year=2008)))["invoices"]
        )
        clock.on(date(2008, 4, 20))
        changed = await request(
            nc,
            ChangeBillingContact(
                member="bury council",
                billing_email="Payables@Bury.example.gov.uk",
                billing_address="Town Hall\nKnowsley Street, Bury BL9 0SW",
                purchase_order="PO-2008-17",
            ),
        )
        assert changed["billing_email"] == NEW_EMAIL
        assert changed["billing_address"] == "Town Hall, Knowsley Street, Bury BL9 0SW"
        shown = await request(nc, ShowMember(member="Bury Council"))
        assert (shown["billing_email"], shown["purchase_order"]) == (NEW_EMAIL, "PO-2008-17")

        # The invoice already issued is the document it was.
        issued = await request(nc, ShowInvoice(number=yearly["number"]))
        assert (issued["billing_email"], issued["purchase_order"]) == (OLD_EMAIL, None)

        # A later document carries the new contact, address and reference.
        up = await request(
            nc, ChangeTier(member="Bury Council", tier="district", effective_on=date(2009, 1, 1))
        )
        later = await request(nc, ShowInvoice(number=up["documents"][1], html=True))
        assert (later["billing_email"], later["purchase_order"]) == (NEW_EMAIL, "PO-2008-17")
        assert "Your purchase order: <strong>PO-2008-17</strong>" in later["html"]
        assert "<div>Knowsley Street</div>" in later["html"]

        # Receipts and reminders go to whoever handles billing now.
        await request(nc, pay(yearly["number"], 100_000, date(2008, 4, 21)))
        clock.on(date(2008, 5, 2))
        automation = service.automation  # type: ignore[attr-defined]
        await automation.tick()
        paid = await eventually(
            lambda: facts_on(nc, "subscriptions.invoice.paid"), what="the receipt"
        )
        assert [f["billing_email"] for f in paid] == [NEW_EMAIL]
        overdue = await eventually(
            lambda: facts_on(nc, "subscriptions.invoice.overdue"), what="reminders"
        )
        bury_reminders = [f for f in overdue if f["number"] == yearly["number"]]
        assert [f["billing_email"] for f in bury_reminders] == [NEW_EMAIL]
        (fact,) = await facts_on(nc, "subscriptions.membership.billing_contact_changed")
        assert (fact["previous_billing_email"], fact["billing_email"]) == (OLD_EMAIL, NEW_EMAIL)

        # An empty reference removes it from the next invoices.
        await request(nc, ChangeBillingContact(member="Bury Council", purchase_order=""))
        clock.on(date(2009, 4, 1))
        await run_to_end(nc, 2009)
        next_year = await invoice_of(
            nc, "Bury Council", (await request(nc, ListInvoices(year=2009)))["invoices"]
        )
        assert (next_year["billing_email"], next_year["purchase_order"]) == (NEW_EMAIL, None)
        assert next_year["billing_address"] == "Town Hall, Knowsley Street, Bury BL9 0SW"

        for command, code, field in (
            (ChangeBillingContact(member="Bury Council"), "invalid", "member"),
            (
                ChangeBillingContact(member="Nobody Council", purchase_order="X"),
                "not_found",
                "member",
            ),
        ):
            with pytest.raises(CommandFailed) as refused:
                await request(nc, command)
            assert (refused.value.error.code, refused.value.error.field) == (code, field)


async def test_a_member_that_left_rejoins_and_is_not_billed_twice_for_a_month(
    store_settings: Settings, nc: Client
) -> None:
    clock = Clock(YEAR_START)
    async with subscriptions(store_settings, clock=clock):
        await enrol_reference(nc)
        await run_to_end(nc, 2008)  # Wyre (district) billed to March 2009
        clock.on(date(2008, 6, 1))
        await request(nc, LeaveMember(member="Wyre Council", leaves_on=date(2008, 6, 30)))
        for command, code, field in (
            (
                RejoinMember(member="Bury Council", tier="district", joined_on=date(2008, 7, 1)),
                "conflict",
                "member",
            ),
            (
                RejoinMember(member="Wyre Council", tier="district", joined_on=date(2008, 6, 30)),
                "invalid",
                "joined_on",
            ),
            (
                RejoinMember(member="Wyre Council", tier="gold", joined_on=date(2008, 12, 1)),
                "invalid",
                "tier",
            ),
            (
                JoinMember(
                    name="Wyre Council",
                    tier="district",
                    billing_email="a@wyre.gov.uk",
                    joined_on=date(2008, 12, 1),
                ),
                "conflict",
                "name",
            ),
        ):
            with pytest.raises(CommandFailed) as refused:
                await request(nc, command)
            assert (refused.value.error.code, refused.value.error.field) == (code, field), command
        assert "rejoin it" in refused.value.error.message

        rejoined = await request(
            nc,
            RejoinMember(
                member="Wyre Council",
                tier="upper-tier",
                joined_on=date(2008, 12, 1),
                billing_email="finance@wyre.example.gov.uk",
            ),
        )
        # Leavers pay to the year's end here: the months to March are paid already.
        assert rejoined["pays_from"] == "2009-04-01"
        again = await run_to_end(nc, 2008)
        assert again["issued"] == 0

        clock.on(date(2009, 4, 1))
        await run_to_end(nc, 2009)
        wyre = [
            i
            for i in (await request(nc, ListInvoices(year=2009)))["invoices"]
            if i["billed_name"] == "Wyre Council"
        ]
        assert [(i["gross"], i["billing_email"]) for i in wyre] == [
            (900_000, "finance@wyre.example.gov.uk")
        ]
        shown = await request(nc, ShowMember(member="Wyre Council"))
        assert [(m["starts_on"], m["ends_on"]) for m in shown["memberships"]] == [
            ("2008-04-01", "2008-06-30"),
            ("2008-12-01", None),
        ]
        listed = [m for m in (await request(nc, ListMembers()))["members"] if "Wyre" in m["name"]]
        assert [(m["tier"], m["current"]) for m in listed] == [("upper-tier", True)]
        started = await facts_on(nc, "subscriptions.membership.started")
        assert [f["starts_on"] for f in started if f["member_name"] == "Wyre Council"] == [
            "2008-04-01",
            "2008-12-01",
        ]


async def test_when_leavers_are_refunded_a_member_rejoining_pays_from_the_next_month(
    settings: Settings, nc: Client, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        'refund_leavers = true\n[tiers.district]\nlabel = "District"\n'
        "prices = [{ from_year = 2008, amount = 1200 }]\n"
    )
    async with subscriptions(settings, clock=Clock(date(2008, 3, 1)), catalog_file=catalog):
        await request(
            nc,
            JoinMember(
                name="Eden Council",
                tier="district",
                billing_email="a@eden.gov.uk",
                joined_on=YEAR_START,
            ),
        )
        await request(nc, LeaveMember(member="Eden Council", leaves_on=date(2008, 6, 15)))
        rejoined = await request(
            nc, RejoinMember(member="Eden Council", tier="district", joined_on=date(2008, 6, 20))
        )
        assert rejoined["pays_from"] == "2008-07-01"  # June is paid by the first membership
        await run_to_end(nc, 2008, issued_on=date(2008, 3, 1))
        invoices = (await request(nc, ListInvoices(year=2008)))["invoices"]
        assert sorted(i["net"] for i in invoices) == [30_000, 90_000]  # Apr–Jun, Jul–Mar
        assert sum(i["net"] for i in invoices) == 120_000  # each month once
