"""The demo's invoicing step against a running subscriptions service."""

from __future__ import annotations

from nats.aio.client import Client

from kernel.settings import Settings
from tests.subscriptions_helpers import subscriptions
from vestry.demo import enrol_reference_partnership
from vestry.demo_invoicing import run_invoicing_demo


async def test_demo_bills_the_reference_partnership_once(settings: Settings, nc: Client) -> None:
    async with subscriptions(settings):
        await enrol_reference_partnership(nc)
        first = await run_invoicing_demo(nc, year=2026)
        assert (first["status"], first["issued"], first["already_billed"]) == ("completed", 45, 0)
        assert first["total_billed_pence"] == 23_050_000
        assert first["numbers"] == "INV-000001–INV-000045"
        assert first["preview_by_tier"] == {"district": 24, "public-service": 1, "upper-tier": 20}
        again = await run_invoicing_demo(nc, year=2026)
        assert (again["issued"], again["already_billed"], again["invoices_for_year"]) == (0, 45, 45)
