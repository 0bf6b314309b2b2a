"""Bounds on what the books take: dates outside 2000–2100, amounts above the ceiling
and invoicing runs dated in the past beyond the grace period are refused with a
structured error (code, message, field), and change nothing; a fee above the ceiling
is not billed but dead-lettered for an operator."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
from nats.aio.client import Client
from sqlalchemy import func, select

from contracts import Envelope, Message
from contracts.events_v1 import BookingChargeable
from contracts.money import Money
from contracts.subscriptions_v1 import (
    ChangeTier,
    ImportMembers,
    InvoiceSummary,
    JoinMember,
    LeaveMember,
    RunInvoicing,
)
from kernel.commands import CommandFailed, request
from kernel.deadletter import read_dead_letters
from kernel.settings import Settings
from kernel.streams import ensure_streams
from services.subscriptions.store import Invoice
from tests.conftest import eventually
from tests.finance_support import Clock, pay
from tests.subscriptions_helpers import run_to_end, subscriptions

TODAY = date(2026, 11, 26)


def join(name: str, joined_on: date) -> JoinMember:
    return JoinMember(
        name=name, tier="district", billing_email="ap@wyre.example.gov.uk", joined_on=joined_on
    )


REFUSED: list[tuple[Message, str, str]] = [
    (RunInvoicing(year=2026, issued_on=date(1, 1, 1)), "issued_on", "outside the dates"),
    (
        RunInvoicing(year=2026, issued_on=date(2026, 4, 1)),
        "issued_on",
        "an invoicing run dated 1 April 2026 is more than 31 days in the past "
        "(today is 26 November 2026); date it no earlier than 26 October 2026",
    ),
    (RunInvoicing(year=1999), "year", "financial year 1999 is outside"),
    (RunInvoicing(year=2100, dry_run=True), "year", "financial year 2100 is outside"),
    (join("Wyre Council", date(1999, 12, 31)), "joined_on", "31 December 1999 is outside"),
    (
        ChangeTier(member="Bury Council", tier="upper-tier", effective_on=date(2101, 1, 1)),
        "effective_on",
        "1 January 2101 is outside the dates the books take (1 January 2000 to 31 December 2100)",
    ),
    (LeaveMember(member="Bury Council", leaves_on=date(1, 1, 1)), "leaves_on", "outside"),
    (pay("INV-000001", 2**62, date(2026, 11, 20)), "amount", "above the largest amount"),
    (pay("INV-000001", 100_000_001, date(2026, 11, 20)), "amount", "£1,000,000.01 is above"),
    (pay("INV-000001", 100, date(1900, 1, 1)), "received_on", "1 January 1900 is outside"),
    (InvoiceSummary(year=2026, on=date(3000, 1, 1)), "on", "outside"),
    (
        ImportMembers(
            members=[
                join("Wyre Council", date(2026, 4, 1)),
                join("Fylde Council", date(1066, 10, 14)),
            ],
            lines=[2, 3],
        ),
        "line 3",
        "nothing imported: line 3: 14 October 1066 is outside",
    ),
]


async def test_dates_amounts_and_backdated_runs_outside_the_bounds_are_refused(
    settings: Settings, nc: Client
) -> None:
    async with subscriptions(settings, clock=Clock(TODAY)) as service:
        await request(nc, join("Bury Council", date(2026, 4, 1)))
        await run_to_end(nc, 2026)  # dated today: INV-000001
        await asyncio.sleep(0.3)
        before = (await nc.jetstream().stream_info("SUBSCRIPTIONS")).state.messages
        for command, field, words in REFUSED:
            with pytest.raises(CommandFailed) as refused:
                await request(nc, command)
            error = refused.value.error
            assert (error.code, error.field) == ("out_of_range", field), command
            assert words in error.message, error.message
        async with service.sessions() as session:  # nothing was issued or numbered
            assert await session.scalar(select(func.count()).select_from(Invoice)) == 1
        await asyncio.sleep(0.3)
        assert (await nc.jetstream().stream_info("SUBSCRIPTIONS")).state.messages == before

        # Within the grace period a run may be dated back: 31 days, not 32.
        await request(nc, join("Wyre Council", date(2026, 4, 1)))
        on_time = await run_to_end(nc, 2026, issued_on=TODAY - timedelta(days=31))
        assert on_time["issued"] == 1


async def test_the_ceiling_and_the_grace_period_are_settings(
    settings: Settings, nc: Client
) -> None:
    async with subscriptions(
        settings, clock=Clock(TODAY), max_amount_pence=1_000_000, run_backdate_days=400
    ):
        await request(nc, join("Bury Council", date(2026, 4, 1)))
        run = await run_to_end(nc, 2026, issued_on=date(2026, 4, 1))  # 239 days back: allowed
        assert run["issued"] == 1
        with pytest.raises(CommandFailed) as refused:
            await request(nc, pay("INV-000001", 1_000_001, date(2026, 4, 20)))
        assert refused.value.error.message == (
            "£10,000.01 is above the largest amount the books take in one go (£10,000.00); "
            "check the figure"
        )
        paid = await request(nc, pay("INV-000001", 200_000, date(2026, 4, 20)))
        assert paid["status"] == "paid"


async def test_a_catalog_price_above_the_ceiling_stops_the_service_from_starting(
    settings: Settings, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from services.subscriptions.domain import CatalogError
    from tests.subscriptions_helpers import billing_settings

    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        '[tiers.gold]\nlabel = "Gold"\nprices = [{ from_year = 2008, amount = "2,000,000" }]\n'
    )
    with pytest.raises(CatalogError, match=r"tier 'gold' from 2008: £2,000,000\.00 is above"):
        billing_settings(catalog_file=catalog).catalog()


async def test_a_booking_fee_above_the_ceiling_is_not_billed_but_dead_lettered(
    settings: Settings, nc: Client
) -> None:
    js = nc.jetstream()
    await ensure_streams(js, duplicate_window_s=600)
    async with subscriptions(settings) as service:
        starts = datetime(2026, 6, 10, 9, tzinfo=UTC)
        for booking, pence in (("b-huge", 2**62), ("b-fine", 15_000)):
            fact = BookingChargeable(
                booking_id=booking,
                reference=f"REF-{booking}",
                event_id="e-1",
                event_title="Lean workshop",
                event_starts_at=starts,
                booker_name="Ann Smith",
                booker_email="ann@example.org",
                organisation_name="Example Trust",
                fee=Money(amount_minor=pence),
                member_price=False,
                refund_until=starts - timedelta(days=7),
            )
            await js.publish(fact.SUBJECT, Envelope.wrap(fact).to_bytes())
        letters = await eventually(
            lambda: _letters(js), timeout=20, what="the huge fee dead-lettered"
        )
        assert letters[0].error == (
            "BillingError: booking b-huge not billed: its fee is out of range (fee "
            "4611686018427387904 pence, event on 2026-06-10; the books take up to 100000000 "
            "pence, 2000-2100)"
        )
        async with service.sessions() as session:
            billed = list(await session.scalars(select(Invoice.booking_id)))
        assert billed == ["b-fine"]


async def _letters(js):  # type: ignore[no-untyped-def]
    return [
        letter
        for letter in await read_dead_letters(js)
        if letter.subject.endswith("booking.chargeable")
    ]
