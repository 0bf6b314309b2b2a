"""Tier changes and leaves take effect on their dates, on SQLite and PostgreSQL: a year
not yet invoiced bills each month at the tier it has; a year already invoiced gets a
credit note and an invoice for exactly the months a change reaches, whatever order the
changes are recorded in."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from nats.aio.client import Client

from contracts.subscriptions_v1 import (
    ChangeTier,
    JoinMember,
    LeaveMember,
    ListInvoices,
    RunInvoicing,
    ShowInvoice,
    ShowMember,
)
from kernel.commands import request
from kernel.settings import Settings
from tests.finance_support import Clock, invoice_of
from tests.subscriptions_helpers import enrol_reference, run_to_end, subscriptions

YEAR_START = date(2008, 4, 1)
REFERENCE_TOTAL = 23_050_000


@pytest.fixture
def store_services() -> tuple[str, ...]:
    return ("subscriptions",)


async def test_a_change_dated_1_march_made_before_the_run_bills_11_months_old_and_1_new(
    store_settings: Settings, nc: Client
) -> None:
    clock = Clock(date(2008, 3, 20))
    async with subscriptions(store_settings, clock=clock):
        await enrol_reference(nc)
        await request(
            nc,
            ChangeTier(member="Bolton Council", tier="district", effective_on=date(2009, 3, 1)),
        )
        preview = await request(nc, RunInvoicing(year=2008, dry_run=True))
        assert preview["net"] == REFERENCE_TOTAL - 900_000 + 841_667

        clock.on(YEAR_START)
        run = await run_to_end(nc, 2008)
        assert (run["issued"], run["net"]) == (45, REFERENCE_TOTAL - 900_000 + 841_667)
        yearly = (await request(nc, ListInvoices(year=2008)))["invoices"]
        bolton = await invoice_of(nc, "Bolton Council", yearly)
        assert bolton["gross"] == 841_667  # £8,416.67, not £2,000 nor £9,000
        assert [(line["months"], line["net"]) for line in bolton["lines"]] == [
            (11, 825_000),
            (1, 16_667),
        ]
        assert bolton["lines"][0]["description"].endswith("1 Apr 2008 – 28 Feb 2009 (11 months)")
        assert bolton["lines"][1]["description"].startswith("District council subscription")
        assert bolton["tier"] == "upper-tier"  # the tier the year began at

        # From the next year on, the new tier for the whole year.
        clock.on(date(2009, 4, 1))
        await run_to_end(nc, 2009)
        later = (await request(nc, ListInvoices(year=2009)))["invoices"]
        assert (await invoice_of(nc, "Bolton Council", later))["gross"] == 200_000
        shown = await request(nc, ShowMember(member="Bolton Council"))
        assert shown["tier"] == "district"


async def test_changes_after_the_run_credit_and_invoice_only_the_months_they_reach(
    store_settings: Settings, nc: Client
) -> None:
    clock = Clock(YEAR_START)
    async with subscriptions(store_settings, clock=clock):
        await enrol_reference(nc)
        await run_to_end(nc, 2008)
        clock.on(date(2008, 6, 2))
        # Wigan moves to district from October, then — recorded later, dated earlier — to
        # the public-service tier from July: July to September change once more.
        october = await request(
            nc,
            ChangeTier(member="Wigan Council", tier="district", effective_on=date(2008, 10, 1)),
        )
        july = await request(
            nc,
            ChangeTier(
                member="Wigan Council", tier="public-service", effective_on=date(2008, 7, 1)
            ),
        )
        documents = {}
        for number in october["documents"] + july["documents"]:
            shown = await request(nc, ShowInvoice(number=number))
            documents[number] = (shown["kind"], [line["months"] for line in shown["lines"]])
            documents[number] += (shown["net"],)
        assert list(documents.values()) == [
            ("credit_note", [6], 450_000),  # Oct–Mar at upper tier
            ("invoice", [6], 100_000),  # Oct–Mar at district
            ("credit_note", [3], 225_000),  # Jul–Sep at upper tier
            ("invoice", [3], 62_500),  # Jul–Sep at public-service
        ]
        wigan = await request(nc, ShowMember(member="Wigan Council"))
        net = sum(d["net"] if d["kind"] == "invoice" else -d["net"] for d in wigan["documents"])
        # Apr–Jun upper, Jul–Sep public-service, Oct–Mar district.
        assert net == 225_000 + 62_500 + 100_000
        assert wigan["tier"] == "district"


async def test_a_leave_recorded_before_the_run_bills_up_to_its_month_when_leavers_are_refunded(
    settings: Settings, nc: Client, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        'refund_leavers = true\n[tiers.district]\nlabel = "District"\n'
        "prices = [{ from_year = 2008, amount = 1200 }]\n"
    )
    async with subscriptions(settings, clock=Clock(date(2008, 3, 1)), catalog_file=catalog):
        for name, joined in (
            ("Eden Council", date(2008, 4, 1)),
            ("Fylde Council", date(2008, 10, 15)),
        ):
            await request(
                nc,
                JoinMember(
                    name=name, tier="district", billing_email="a@x.gov.uk", joined_on=joined
                ),
            )
        left = await request(nc, LeaveMember(member="Eden Council", leaves_on=date(2008, 9, 30)))
        assert left["documents"] == []  # nothing billed yet: nothing to credit
        await run_to_end(nc, 2008)
        invoices = (await request(nc, ListInvoices(year=2008)))["invoices"]
        assert {i["billed_name"]: i["net"] for i in invoices} == {
            "Eden Council": 60_000,  # April to September
            "Fylde Council": 60_000,  # October (its joining month) to March
        }
