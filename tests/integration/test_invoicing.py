"""Invoicing against a real nats-server and SQLite: runs, numbers, payments, credit notes."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
from nats.aio.client import Client
from sqlalchemy import select

from contracts import Envelope
from contracts.events_v1 import BookingCancelled, BookingChargeable
from contracts.money import Money
from contracts.subscriptions_v1 import (
    ChangeTier,
    InvoiceRunStatus,
    InvoiceSummary,
    JoinMember,
    LeaveMember,
    ListInvoices,
    RecordPayment,
    RunInvoicing,
    ShowInvoice,
    VoidInvoice,
)
from kernel.commands import CommandFailed, request
from kernel.settings import Settings
from kernel.streams import ensure_streams
from services.subscriptions.store import Invoice
from tests.conftest import eventually
from tests.finance_support import Clock  # the service's day: runs dated on it are not backdated
from tests.subscriptions_helpers import enrol_reference, run_to_end, subscriptions


async def stream_subjects(nc: Client, subject: str) -> int:
    js = nc.jetstream()
    info = await js.stream_info("SUBSCRIPTIONS", subjects_filter=subject)
    return sum((info.state.subjects or {}).values())


async def test_reference_partnership_2008_bills_230500_pounds_once(
    settings: Settings, nc: Client
) -> None:
    async with subscriptions(settings, clock=Clock(date(2008, 4, 1))) as service:
        await enrol_reference(nc)
        preview = await request(nc, RunInvoicing(year=2008, dry_run=True))
        assert (preview["to_issue"], preview["net"]) == (45, 23_050_000)
        assert {t["tier"]: t["members"] for t in preview["tiers"]} == {
            "district": 24,
            "public-service": 1,
            "upper-tier": 20,
        }
        async with service.sessions() as session:  # a dry run numbers nothing
            assert (await session.scalars(select(Invoice))).first() is None

        first = await run_to_end(nc, 2008, issued_on=date(2008, 4, 1))
        assert (first["status"], first["issued"], first["already_billed"]) == ("completed", 45, 0)
        assert first["net"] == 23_050_000 and first["gross"] == 23_050_000

        again = await run_to_end(nc, 2008)
        assert (again["issued"], again["already_billed"]) == (0, 45)

        listed = (await request(nc, ListInvoices(year=2008)))["invoices"]
        assert [i["number"] for i in listed] == [f"INV-{n:06d}" for n in range(1, 46)]
        assert sum(i["gross"] for i in listed) == 23_050_000
        assert all(i["due_on"] == "2008-05-01" for i in listed)
        await eventually(
            lambda: _is(stream_subjects(nc, "subscriptions.invoice.issued"), 45),
            what="45 issued facts",
        )
        await eventually(
            lambda: _is(stream_subjects(nc, "subscriptions.invoice_run.completed"), 2),
            what="2 run facts",
        )
        runs = (await request(nc, InvoiceRunStatus(year=2008)))["runs"]
        assert [r["issued"] for r in runs] == [0, 45]


async def _is(value, expected):  # type: ignore[no-untyped-def]
    return (await value) == expected


async def test_a_second_run_of_the_same_year_is_refused_while_the_first_runs(
    settings: Settings, nc: Client
) -> None:
    async with subscriptions(settings, invoice_run_chunk=5, invoice_run_pause_s=0.2):
        await enrol_reference(nc)
        first = await request(nc, RunInvoicing(year=2008))
        with pytest.raises(CommandFailed) as refused:
            await request(nc, RunInvoicing(year=2008))
        assert refused.value.error.code == "busy"
        assert first["run_id"] in refused.value.error.message
        other_year = await request(nc, RunInvoicing(year=2009, dry_run=True))
        assert other_year["to_issue"] == 45  # other commands are answered meanwhile


@pytest.mark.parametrize(
    ("command", "code", "field"),
    [
        (RunInvoicing(year=2001), "no_price", "year"),
        (RunInvoicing(year=2001, dry_run=True), "no_price", "year"),
        (
            RecordPayment(
                invoice="INV-999", amount=Money(amount_minor=1), received_on=date(2008, 5, 1)
            ),
            "not_found",
            "invoice",
        ),
        (
            ChangeTier(member="Nobody Council", tier="district", effective_on=date(2008, 6, 1)),
            "not_found",
            "member",
        ),
        (
            ChangeTier(member="Bolton Council", tier="platinum", effective_on=date(2008, 6, 1)),
            "invalid",
            "tier",
        ),
        (
            JoinMember(
                name="Bolton council",
                tier="district",
                billing_email="a@b.gov.uk",
                joined_on=date(2008, 4, 1),
            ),
            "conflict",
            "name",
        ),
        (
            JoinMember(
                name="New Council",
                tier="gold",
                billing_email="a@b.gov.uk",
                joined_on=date(2008, 4, 1),
            ),
            "invalid",
            "tier",
        ),
    ],
)
async def test_bad_requests_are_refused_and_change_nothing(
    settings: Settings,
    nc: Client,
    command,
    code: str,
    field: str,  # type: ignore[no-untyped-def]
) -> None:
    async with subscriptions(settings) as service:
        await enrol_reference(nc)
        await asyncio.sleep(0.3)
        before = await nc.jetstream().stream_info("SUBSCRIPTIONS")
        with pytest.raises(CommandFailed) as refused:
            await request(nc, command)
        assert (refused.value.error.code, refused.value.error.field) == (code, field)
        async with service.sessions() as session:
            assert (await session.scalars(select(Invoice))).first() is None
        await asyncio.sleep(0.3)
        after = await nc.jetstream().stream_info("SUBSCRIPTIONS")
        assert after.state.messages == before.state.messages


async def test_payments_part_pay_pay_refuse_overpayment_and_void_invoices(
    settings: Settings, nc: Client
) -> None:
    async with subscriptions(settings, clock=Clock(date(2008, 4, 1))):
        await enrol_reference(nc)
        await run_to_end(nc, 2008, issued_on=date(2008, 4, 1))
        first = await request(nc, ShowInvoice(number="INV-000001"))
        assert first["billed_name"] == "Allerdale Borough Council"  # numbered by name
        assert first["gross"] == 200_000
        part = await request(
            nc,
            RecordPayment(
                invoice="INV-000001",
                amount=Money(amount_minor=100_000),
                received_on=date(2008, 4, 20),
            ),
        )
        assert (part["status"], part["outstanding"]) == ("part_paid", 100_000)
        with pytest.raises(CommandFailed) as over:
            await request(
                nc,
                RecordPayment(
                    invoice="1", amount=Money(amount_minor=100_001), received_on=date(2008, 4, 21)
                ),
            )
        assert (
            over.value.error.code == "overpayment"
            and "£1,000.00 outstanding" in over.value.error.message
        )
        paid = await request(
            nc,
            RecordPayment(
                invoice="inv-1", amount=Money(amount_minor=100_000), received_on=date(2008, 4, 22)
            ),
        )
        assert paid["status"] == "paid"
        await request(nc, VoidInvoice(invoice="INV-000002", reason="billed in error"))
        with pytest.raises(CommandFailed) as void:
            await request(
                nc,
                RecordPayment(
                    invoice="INV-000002",
                    amount=Money(amount_minor=1),
                    received_on=date(2008, 4, 22),
                ),
            )
        assert void.value.error.code == "void"
        with pytest.raises(CommandFailed) as paid_void:
            await request(nc, VoidInvoice(invoice="INV-000001", reason="oops"))
        assert paid_void.value.error.code == "paid"
        summary = await request(nc, InvoiceSummary(year=2008, on=date(2008, 6, 15)))
        assert summary["totals"]["paid"] == 200_000
        assert summary["totals"]["invoices"] == 44
        assert summary["aged"]["31-60"] == summary["totals"]["outstanding"]
        shown = await request(nc, ShowInvoice(number="INV-000001", html=True))
        assert "Invoice INV-000001" in shown["html"] and "£2,000.00" in shown["html"]
        assert "VAT registration" in shown["html"]
        await eventually(
            lambda: _is(stream_subjects(nc, "subscriptions.invoice.paid"), 2), what="paid facts"
        )


async def test_tier_change_credits_old_months_and_invoices_new_ones(
    settings: Settings, nc: Client
) -> None:
    async with subscriptions(settings):
        await enrol_reference(nc)
        await run_to_end(nc, 2008)
        changed = await request(
            nc,
            ChangeTier(
                member="Burnley Borough Council", tier="upper-tier", effective_on=date(2008, 10, 15)
            ),
        )
        assert changed["documents"] == ["CN-000001", "INV-000046"]
        credit = await request(nc, ShowInvoice(number="CN-000001"))
        invoice = await request(nc, ShowInvoice(number="INV-000046"))
        assert credit["net"] == 100_000 and invoice["net"] == 450_000  # 6 months each
        assert credit["credits_invoice"] is not None
        again = await run_to_end(nc, 2008)
        assert again["issued"] == 0
        await eventually(
            lambda: _is(stream_subjects(nc, "subscriptions.credit_note.issued"), 1), what="credit"
        )


async def test_leaver_is_not_billed_for_later_years_and_refunded_only_if_the_catalog_says(
    settings: Settings, nc: Client, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        'refund_leavers = true\n[tiers.district]\nlabel = "District"\n'
        'prices = [{ from_year = 2008, amount = 1200, vat = "20%" }]\n'
    )
    async with subscriptions(settings, catalog_file=catalog):
        await request(
            nc,
            JoinMember(
                name="Eden District Council",
                tier="district",
                billing_email="a@eden.gov.uk",
                joined_on=date(2008, 4, 1),
            ),
        )
        await run_to_end(nc, 2008)
        left = await request(
            nc, LeaveMember(member="eden district council", leaves_on=date(2008, 9, 30))
        )
        assert left["documents"] == ["CN-000001"]
        refund = await request(nc, ShowInvoice(number="CN-000001"))
        assert (refund["net"], refund["vat"]) == (60_000, 12_000)  # Oct–Mar
        later = await run_to_end(nc, 2009)
        assert (later["issued"], later["to_bill"]) == (0, 0)


async def test_overdue_sweep_sends_each_reminder_stage_once(settings: Settings, nc: Client) -> None:
    now = [datetime(2008, 4, 1, 9, tzinfo=UTC)]
    async with subscriptions(settings, clock=lambda: now[0]) as service:
        await enrol_reference(nc)
        await run_to_end(nc, 2008)  # due 1 May 2008
        await request(
            nc,
            RecordPayment(
                invoice="1", amount=Money(amount_minor=200_000), received_on=date(2008, 4, 2)
            ),
        )
        automation = service.automation  # type: ignore[attr-defined]
        for day, expected in (
            (date(2008, 5, 1), 0),
            (date(2008, 5, 2), 44),
            (date(2008, 5, 3), 0),
            (date(2008, 5, 15), 44),
            (date(2008, 5, 15), 0),
            (date(2008, 6, 1), 44),
            (date(2008, 9, 1), 0),
        ):
            now[0] = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=10)
            automation.swept_on = None
            done = await automation.tick()
            assert done["reminders"] == expected, day
        await eventually(
            lambda: _is(stream_subjects(nc, "subscriptions.invoice.overdue"), 132), what="reminders"
        )


async def test_automation_runs_the_year_on_its_date_and_sweeps_joiners_monthly(
    settings: Settings, nc: Client
) -> None:
    now = [datetime(2008, 3, 20, 12, tzinfo=UTC)]
    async with subscriptions(settings, clock=lambda: now[0]) as service:
        automation = service.automation  # type: ignore[attr-defined]
        await enrol_reference(nc)
        nothing = await automation.tick()  # March 2008: members join in April, none to bill
        now[0] = datetime(2008, 4, 1, 5, 59, tzinfo=UTC) - timedelta(hours=1)  # 05:59 BST
        too_early = await automation.tick()
        assert nothing["runs"] == too_early["runs"] == []
        assert await _runs_of(nc, 2007, 0) and await _runs_of(nc, 2008, 0)
        now[0] = datetime(2008, 4, 1, 5, 0, tzinfo=UTC)  # 06:00 BST
        started = await automation.tick()
        assert len(started["runs"]) == 1
        await eventually(lambda: _completed(nc, 2008, 45))
        # April's monthly sweep was due too; it finds nobody left to bill.
        assert (await automation.tick())["runs"] == []
        await request(
            nc,
            JoinMember(
                name="Late Joiner Council",
                tier="district",
                billing_email="a@late.gov.uk",
                joined_on=date(2008, 4, 20),
            ),
        )
        await automation.tick()  # same moments: nothing new
        assert await _runs_of(nc, 2008, 1)
        now[0] = datetime(2008, 5, 1, 5, 0, tzinfo=UTC)
        await automation.tick()
        await eventually(lambda: _completed(nc, 2008, 1))
        late = (await request(nc, ListInvoices(year=2008)))["invoices"][-1]
        assert (late["billed_name"], late["net"]) == ("Late Joiner Council", 200_000)


async def _runs_of(nc: Client, year: int, count: int) -> bool:
    return len((await request(nc, InvoiceRunStatus(year=year)))["runs"]) == count


async def _completed(nc: Client, year: int, issued: int) -> bool:
    runs = (await request(nc, InvoiceRunStatus(year=year)))["runs"]
    return bool(runs) and runs[0]["status"] == "completed" and runs[0]["issued"] == issued


async def test_chargeable_booking_is_invoiced_once_and_credited_if_cancelled_in_time(
    settings: Settings, nc: Client
) -> None:
    js = nc.jetstream()
    await ensure_streams(js, duplicate_window_s=600)
    async with subscriptions(settings) as service:
        starts = datetime(2026, 6, 10, 9, tzinfo=UTC)
        for booking, refund_until in (
            ("b-1", starts - timedelta(days=7)),
            ("b-2", starts - timedelta(days=7)),
        ):
            fact = BookingChargeable(
                booking_id=booking,
                reference=f"REF{booking}",
                event_id="e-1",
                event_title="Lean workshop",
                event_starts_at=starts,
                booker_name="Ann Smith",
                booker_email="ann@example.org",
                organisation_name="Example Trust",
                fee=Money(amount_minor=15_000),
                member_price=False,
                refund_until=refund_until,
            )
            for _ in range(2):  # a replay: invoiced once
                await js.publish(fact.SUBJECT, Envelope.wrap(fact).to_bytes())
        for booking, at in (
            ("b-1", starts - timedelta(days=10)),
            ("b-2", starts - timedelta(days=1)),
        ):
            cancelled = BookingCancelled(
                booking_id=booking,
                reference=f"REF{booking}",
                event_id="e-1",
                cancelled_at=at,
                reason="booker",
                was="confirmed",
            )
            await js.publish(cancelled.SUBJECT, Envelope.wrap(cancelled).to_bytes())

        async def documents() -> list[tuple[str, str | None, int]]:
            async with service.sessions() as session:
                rows = await session.execute(
                    select(Invoice.kind, Invoice.booking_id, Invoice.gross_pence)
                )
                return sorted((k, b, g) for k, b, g in rows)

        await eventually(lambda: _settled(documents, 3), timeout=20)
        assert await documents() == [
            ("credit_note", "b-1", 18_000),
            ("invoice", "b-1", 18_000),
            ("invoice", "b-2", 18_000),
        ]


async def _settled(documents, count: int) -> bool:  # type: ignore[no-untyped-def]
    return len(await documents()) == count


async def test_other_commands_are_answered_promptly_during_a_long_run(
    settings: Settings, nc: Client
) -> None:
    """Commands take the store's write lock, so they wait for the chunk in hand, no longer."""
    from benchmarks.invoice_run import enrol

    async with subscriptions(settings, invoice_run_chunk=1000) as service:
        await enrol(service, 6000)
        run = await request(nc, RunInvoicing(year=2026))
        latencies = []
        while True:
            started = asyncio.get_running_loop().time()
            record = await request(nc, InvoiceRunStatus(run_id=run["run_id"]))
            latencies.append(asyncio.get_running_loop().time() - started)
            if record["status"] == "completed":
                break
            await asyncio.sleep(0.05)
        assert record["issued"] == 6000
        assert len(latencies) >= 3, "the run was too quick to prove anything"
        # A command waits for the chunk in hand (~0.3 s for 1,000 here) and at worst
        # a few more while SQLite's busy handler sleeps; never the whole run.
        assert max(latencies) < 3.0, latencies


async def test_refusals_for_members_that_left_and_documents_that_do_not_exist(
    settings: Settings, nc: Client
) -> None:
    async with subscriptions(settings):
        await enrol_reference(nc)
        await request(nc, LeaveMember(member="Wyre Council", leaves_on=date(2008, 12, 31)))
        cases = [
            (LeaveMember(member="Wyre Council", leaves_on=date(2009, 1, 31)), "ended", "member"),
            (  # a leaver may change tier up to its last day, not after
                ChangeTier(member="Wyre Council", tier="upper-tier", effective_on=date(2009, 1, 1)),
                "ended",
                "member",
            ),
            (
                LeaveMember(member="Bury Council", leaves_on=date(2008, 3, 1)),
                "invalid",
                "leaves_on",
            ),
            (
                ChangeTier(
                    member="Chorley Council", tier="district", effective_on=date(2008, 6, 1)
                ),
                "invalid",
                "tier",
            ),
            (ShowInvoice(number="INV-000001"), "not_found", "number"),
            (ShowInvoice(number="nonsense"), "not_found", "number"),
            (InvoiceRunStatus(run_id="no-such-run"), "not_found", "run_id"),
            (VoidInvoice(invoice="CN-000001", reason="not an invoice"), "not_found", "invoice"),
        ]
        for command, code, field in cases:
            with pytest.raises(CommandFailed) as refused:
                await request(nc, command)
            assert (refused.value.error.code, refused.value.error.field) == (code, field), command
        later = await run_to_end(nc, 2009)
        assert later["to_bill"] == 44  # the leaver is not billed for 2009
