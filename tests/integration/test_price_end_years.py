"""A catalog whose tier is withdrawn (its last price ended) through the subscriptions
service: a run refuses while a member it bills is still on that tier, naming the
member, and bills it once it has moved; nobody rejoins at the withdrawn tier; a price
for one year only bills that year at it."""

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
    RejoinMember,
    RunInvoicing,
)
from kernel.commands import CommandFailed, request
from kernel.settings import Settings
from tests.finance_support import Clock
from tests.subscriptions_helpers import run_to_end, subscriptions

CATALOG = """
[tiers.district]
label = "District council"
prices = [
  { from_year = 2008, amount = "2,000.00" },
  { from_year = 2012, until_year = 2012, amount = "1,800.00" },
]

[tiers.legacy]
label = "Legacy associate"
prices = [{ from_year = 2005, until_year = 2010, amount = "500.00" }]
"""


def member(name: str, tier: str, joined_on: date) -> JoinMember:
    return JoinMember(
        name=name,
        tier=tier,
        billing_email=f"ap@{name.split()[0].lower()}.example.gov.uk",
        joined_on=joined_on,
    )


async def test_a_withdrawn_tier_bills_nobody_and_a_one_year_price_bills_its_year(
    settings: Settings, nc: Client, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG)
    clock = Clock(date(2010, 4, 1))
    async with subscriptions(settings, clock=clock, catalog_file=catalog):
        await request(nc, member("Wyre Council", "legacy", date(2010, 4, 1)))
        await request(nc, member("Fylde Council", "district", date(2010, 4, 1)))
        first = await run_to_end(nc, 2010, issued_on=date(2010, 4, 1))
        assert first["issued"] == 2

        clock.on(date(2011, 4, 1))
        with pytest.raises(CommandFailed) as refused:
            await request(nc, RunInvoicing(year=2011, dry_run=True))
        assert refused.value.error.code == "no_price"
        assert "Wyre Council cannot be billed for 2011" in refused.value.error.message
        assert "ended in 2010" in refused.value.error.message
        with pytest.raises(CommandFailed):
            await request(nc, RunInvoicing(year=2011))
        with pytest.raises(CommandFailed) as moved_back:
            await request(
                nc, ChangeTier(member="Fylde Council", tier="legacy", effective_on=date(2011, 4, 1))
            )
        assert "no longer offered" in moved_back.value.error.message

        await request(
            nc, ChangeTier(member="Wyre Council", tier="district", effective_on=date(2011, 4, 1))
        )
        second = await run_to_end(nc, 2011, issued_on=date(2011, 4, 1))
        assert second["issued"] == 2

        await request(nc, LeaveMember(member="Fylde Council", leaves_on=date(2012, 3, 31)))
        clock.on(date(2012, 4, 1))
        with pytest.raises(CommandFailed) as rejoined:
            await request(
                nc, RejoinMember(member="Fylde Council", tier="legacy", joined_on=date(2012, 4, 1))
            )
        assert rejoined.value.error.code == "no_price"
        await run_to_end(nc, 2012, issued_on=date(2012, 4, 1))
        invoices = (await request(nc, ListInvoices(year=2012)))["invoices"]
        assert [(i["billed_name"], i["gross"]) for i in invoices] == [("Wyre Council", 180_000)]
