"""The reference year end to end, on SQLite and PostgreSQL: the 45 members are invoiced
£230,500.00; three pay in full, two in part, one moves tier from the first day of the
year and is credited in full and invoiced again at its new tier, one pays and leaves
and its unused months are credited and held on its account. The overdue sweep chases
exactly the invoices with a balance left, for that balance; each member's statement is
its invoices less its credit notes less its payments, and the year's aged debt adds up
to what the statements say is owed."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

import services.subscriptions
from contracts.subscriptions_v1 import (
    ChangeTier,
    InvoiceSummary,
    LeaveMember,
    ListInvoices,
    ShowInvoice,
    ShowStatement,
)
from kernel.commands import request
from kernel.settings import Settings
from tests.conftest import eventually
from tests.finance_support import Clock, facts_on, pay
from tests.subscriptions_helpers import enrol_reference, run_to_end, subscriptions

YEAR_START = date(2008, 4, 1)  # the run is dated today: every yearly invoice is due 1 May
SWEPT_ON = date(2008, 5, 11)  # past every due date, the tier change's invoice's included
REFERENCE_TOTAL = 23_050_000  # 20 upper-tier × £9,000 + 24 district × £2,000 + 1 × £2,500

PAID_IN_FULL = {
    "Bury Council": 900_000,
    "Burnley Borough Council": 200_000,
    "Greater Manchester Fire and Rescue Service": 250_000,
}
PAID_IN_PART = {"Wigan Council": 300_000, "Chorley Council": 50_000}
CHANGES_TIER = "Bolton Council"  # upper tier to district, from the first day of the year
LEAVES = "Oldham Council"  # pays its £9,000, then leaves on 30 September


@pytest.fixture
def store_services() -> tuple[str, ...]:
    return ("subscriptions",)


@pytest.fixture
def refunding_catalog(tmp_path: Path) -> Path:
    """The reference catalog, with its one switch set to refund leavers' unused months."""
    reference = Path(services.subscriptions.__file__).parent / "reference-catalog.toml"
    text = reference.read_text()
    assert "refund_leavers = false" in text
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(text.replace("refund_leavers = false", "refund_leavers = true"))
    return catalog


async def test_the_reference_year_closes_with_statements_and_aged_debt_agreeing_with_documents(
    store_settings: Settings, nc: Client, refunding_catalog: Path
) -> None:
    clock = Clock(YEAR_START)
    async with subscriptions(
        store_settings, clock=clock, catalog_file=refunding_catalog
    ) as service:
        members = await enrol_reference(nc)
        run = await run_to_end(nc, 2008)
        assert (run["status"], run["issued"]) == ("completed", 45)

        # 45 invoices for the year: £230,500.00, each tier at its price.
        yearly = (await request(nc, ListInvoices(year=2008)))["invoices"]
        assert len(yearly) == 45
        assert {i["billed_name"] for i in yearly} == {m.name for m in members}
        assert {i["due_on"] for i in yearly} == {"2008-05-01"}
        summary = await request(nc, InvoiceSummary(year=2008))
        assert (summary["totals"]["invoices"], summary["totals"]["billed"]) == (
            45,
            REFERENCE_TOTAL,
        )
        assert sum(i["gross"] for i in yearly) == REFERENCE_TOTAL
        assert {t["tier"]: (t["invoices"], t["billed"]) for t in summary["tiers"]} == {
            "upper-tier": (20, 20 * 900_000),
            "district": (24, 24 * 200_000),
            "public-service": (1, 250_000),
        }
        number = {i["billed_name"]: i["number"] for i in yearly}

        # Bolton moves to district from 1 April, after the run: its £9,000 is credited
        # in full and the year invoiced again at £2,000, due 30 days on.
        clock.on(date(2008, 4, 10))
        moved = await request(
            nc, ChangeTier(member=CHANGES_TIER, tier="district", effective_on=YEAR_START)
        )
        credit_note, reinvoice = moved["documents"]
        old = await request(nc, ShowInvoice(number=number[CHANGES_TIER]))
        assert (old["status"], old["credited"], old["outstanding"]) == ("credited", 900_000, 0)
        new = await request(nc, ShowInvoice(number=reinvoice))
        assert (new["gross"], new["tier"], new["due_on"]) == (200_000, "district", "2008-05-10")
        note = await request(nc, ShowInvoice(number=credit_note))
        assert (note["gross"], note["unallocated"]) == (900_000, 0)

        # Mid-April's payments: three in full, two in part, and the future leaver in full.
        clock.on(date(2008, 4, 15))
        for name, pence in {**PAID_IN_FULL, **PAID_IN_PART, LEAVES: 900_000}.items():
            await request(nc, pay(number[name], pence, date(2008, 4, 15), f"BACS {name}"))

        # Oldham, paid in full, gives notice on 20 April to leave on 30 September: with
        # leavers refunded, October to March (6 × £750) is credited. Nothing is owed to
        # set it against, so the credit is held on Oldham's account; its invoice stays paid.
        clock.on(date(2008, 4, 20))
        left = await request(nc, LeaveMember(member=LEAVES, leaves_on=date(2008, 9, 30)))
        (refund,) = left["documents"]
        refund_note = await request(nc, ShowInvoice(number=refund))
        assert (refund_note["kind"], refund_note["purpose"]) == ("credit_note", "leaver_refund")
        assert (refund_note["gross"], refund_note["allocations"]) == (450_000, [])
        assert refund_note["unallocated"] == 450_000
        leaver = await request(nc, ShowInvoice(number=number[LEAVES]))
        assert (leaver["status"], leaver["outstanding"]) == ("paid", 0)

        # What is still owed, document by document: 46 invoices, 41 with a balance
        # (40 of the year's 45, and Bolton's district invoice).
        documents = (await request(nc, ListInvoices(year=2008)))["invoices"]
        invoices = [d for d in documents if d["kind"] == "invoice"]
        owing = {i["number"]: i["outstanding"] for i in invoices if i["outstanding"] > 0}
        settled = {number[n] for n in (*PAID_IN_FULL, CHANGES_TIER, LEAVES)}
        assert (len(invoices), len(owing)) == (46, 41)
        assert settled.isdisjoint(owing)
        assert owing[number["Wigan Council"]] == 600_000
        assert owing[number["Chorley Council"]] == 150_000
        assert owing[reinvoice] == 200_000

        # Past every due date, the overdue sweep chases exactly those, for what remains.
        clock.on(SWEPT_ON)
        automation = service.automation  # type: ignore[attr-defined]
        assert (await automation.tick())["reminders"] == 41
        overdue = await eventually(
            lambda: _count(facts_on(nc, "subscriptions.invoice.overdue"), 41),
            what="41 reminders",
        )
        chased = {fact["number"]: fact["outstanding"]["amount_minor"] for fact in overdue}
        assert chased == owing
        assert {fact["stage"] for fact in overdue} == {"first"}

        # Each member's statement is its documents less its payments.
        by_member: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for document in documents:
            sums = by_member[document["member_id"]]
            if document["kind"] == "invoice":
                sums["invoiced"] += document["gross"]
                sums["paid"] += document["paid"]
                sums["outstanding"] += document["outstanding"]
            else:
                sums["credited"] += document["gross"]
        statements: dict[str, dict[str, Any]] = {}
        for member in members:
            statement = await request(nc, ShowStatement(member=member.name))
            statements[member.name] = statement
            sums = by_member[statement["member_id"]]
            assert (statement["invoiced"], statement["credited"], statement["paid"]) == (
                sums["invoiced"],
                sums["credited"],
                sums["paid"],
            ), member.name
            assert statement["balance"] == sums["invoiced"] - sums["credited"] - sums["paid"], (
                member.name
            )
            assert statement["outstanding"] == sums["outstanding"], member.name
            assert statement["balance"] == statement["outstanding"] - statement["credit_held"]
            assert sum(statement["aged"].values()) == statement["outstanding"], member.name
        assert {n: s["balance"] for n, s in statements.items() if s["balance"] <= 0} == {
            **dict.fromkeys(PAID_IN_FULL, 0),
            LEAVES: -450_000,  # in credit by the refund held for it
        }
        assert statements[LEAVES]["credit_held"] == 450_000
        assert statements[CHANGES_TIER]["balance"] == 200_000  # the district year only
        assert statements["Wigan Council"]["balance"] == 600_000
        assert statements["Chorley Council"]["balance"] == 150_000

        # The year's aged debt adds up to what is outstanding, which is what the
        # statements say is owed: £230,500 + £2,000 − £9,000 credited − £26,000 paid.
        summary = await request(nc, InvoiceSummary(year=2008))
        totals = summary["totals"]
        outstanding = REFERENCE_TOTAL + 200_000 - 900_000 - 2_600_000
        assert totals["outstanding"] == outstanding == 19_750_000
        assert sum(summary["aged"].values()) == outstanding
        assert {k: v for k, v in summary["aged"].items() if v} == {"1-30": outstanding}
        assert sum(s["outstanding"] for s in statements.values()) == outstanding
        assert sum(sum(s["aged"].values()) for s in statements.values()) == outstanding
        for tier in summary["tiers"]:
            assert sum(tier["aged"].values()) == tier["outstanding"], tier["tier"]
        # Less the credit held for the leaver, it is the sum of the statements' balances.
        balances = sum(s["balance"] for s in statements.values())
        assert balances == outstanding - 450_000 == 19_300_000
        assert totals["billed"] - totals["credited"] - totals["paid"] == balances
        assert (totals["billed"], totals["credited"], totals["paid"]) == (
            REFERENCE_TOTAL + 200_000,
            900_000 + 450_000,
            2_600_000,
        )


async def _count(facts, expected: int):  # type: ignore[no-untyped-def]
    found = await facts
    return found if len(found) == expected else None
