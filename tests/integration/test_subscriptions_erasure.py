"""A person erased from the subscriptions service, and their subject-access export, on
SQLite and PostgreSQL: the invoices and credit notes HMRC needs stay, with their money
unchanged and the customer's name; the person's email, phone and name go from members,
documents, booking lines and free text, and no reminder is addressed to what replaced
them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from sqlalchemy import inspect, select, text

from contracts import Envelope, Message
from contracts.events_v1 import BookingCancelled, BookingChargeable
from contracts.money import Money
from contracts.people_v1 import ExportPersonFromSubscriptions, PersonErasureRequested
from contracts.personal import ERASED_EMAIL, ERASED_NAME, is_erased_email
from contracts.subscriptions_v1 import JoinMember, ListInvoices, ShowInvoice, ShowMember
from kernel.commands import request
from kernel.runtime import Service
from kernel.settings import Settings
from kernel.streams import ensure_streams
from services.subscriptions.store import Invoice, InvoiceLine, Payment
from tests.conftest import eventually
from tests.finance_support import Clock, facts_on, pay
from tests.subscriptions_helpers import run_to_end, subscriptions

YEAR_START = date(2026, 4, 1)
EVENT_STARTS = datetime(2026, 6, 10, 9, tzinfo=UTC)

JO = "jo.bloggs@bury.example.gov.uk"
JO_PHONE = "07700 900123"
# How Jo may be written anywhere in the store, in any case.
JO_TRACES = ("jo.bloggs", "jo bloggs", "7700900123", "7700 900123")


@pytest.fixture
def store_services() -> tuple[str, ...]:
    return ("subscriptions",)


def chargeable(
    booking: str,
    booker: str,
    email: str,
    *,
    member_id: str | None = None,
    organisation: str | None = None,
) -> BookingChargeable:
    return BookingChargeable(
        booking_id=booking,
        reference=f"BK-{booking}",
        event_id="e-1",
        event_title="Lean workshop",
        event_starts_at=EVENT_STARTS,
        member_id=member_id,
        organisation_name=organisation,
        booker_name=booker,
        booker_email=email,
        fee=Money(amount_minor=15_000),
        member_price=member_id is not None,
        refund_until=EVENT_STARTS - timedelta(days=7),
    )


async def publish(nc: Client, *facts: Message) -> None:
    for fact in facts:
        await nc.jetstream().publish(fact.SUBJECT, Envelope.wrap(fact).to_bytes())


async def documents(service: Service) -> int:
    async with service.sessions() as session:
        return len(list(await session.scalars(select(Invoice.id))))


async def books(service: Service) -> dict[str, Any]:
    """What HMRC needs kept: every document's number, customer, lines, totals, VAT and
    payments, and how much of each is paid and credited."""
    async with service.sessions() as session:
        invoices = {
            i.id: i
            for i in await session.scalars(select(Invoice).order_by(Invoice.series, Invoice.number))
        }
        kept: dict[str, Any] = {
            i.display_number: {
                "customer": (i.billed_name, i.billing_address, i.member_id),
                "money": (i.net_pence, i.vat_pence, i.gross_pence, i.paid_pence, i.credited_pence),
                "status": (i.kind, i.purpose, i.status, i.issued_on, i.due_on),
                "lines": [],
                "payments": [],
            }
            for i in invoices.values()
        }
        for line in await session.scalars(select(InvoiceLine).order_by(InvoiceLine.position)):
            kept[invoices[line.invoice_id].display_number]["lines"].append(
                (line.description, line.months, line.net_pence, line.vat_pence)
            )
        for payment in await session.scalars(select(Payment)):
            kept[invoices[payment.invoice_id].display_number]["payments"].append(
                (payment.amount_pence, payment.received_on)
            )
        return kept


async def text_holding(service: Service, traces: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """Every (table, column, value) of text anywhere in the store holding one of
    ``traces``, in any case: every table, the kernel's included."""
    found = []
    async with service.engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
        for table in sorted(tables):
            result = await connection.execute(text(f'SELECT * FROM "{table}"'))
            columns = list(result.keys())
            for row in result:
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, str) and any(t in value.lower() for t in traces):
                        found.append((table, column, value))
    return found


async def answer_to(nc: Client, erasure_id: str) -> dict[str, Any]:
    """The service's ``PersonErasedFromSubscriptions`` for one request, once it is out."""

    async def answers() -> list[dict[str, Any]]:
        try:
            found = await facts_on(nc, "subscriptions.person.erased")
        except NotFoundError:
            return []
        return [fact for fact in found if fact["erasure_id"] == erasure_id]

    (answer,) = await eventually(answers, timeout=20, what=f"the answer to {erasure_id}")
    return answer


async def test_a_billing_contact_is_erased_and_their_members_invoices_stay_as_they_were(
    store_settings: Settings, nc: Client
) -> None:
    await ensure_streams(nc.jetstream(), duplicate_window_s=600)
    clock = Clock(YEAR_START)
    async with subscriptions(store_settings, clock=clock) as service:
        bury = await request(
            nc,
            JoinMember(
                name="Bury Council",
                tier="district",
                billing_email="Jo.Bloggs@Bury.example.gov.uk",
                joined_on=YEAR_START,
                phone=JO_PHONE,
            ),
        )
        await request(
            nc,
            JoinMember(
                name="Bolton Council",
                tier="upper-tier",
                billing_email="finance@bolton.example.gov.uk",
                joined_on=YEAR_START,
            ),
        )
        await run_to_end(nc, 2026, issued_on=YEAR_START)
        yearly = {
            i["billed_name"]: i["number"] for i in (await request(nc, ListInvoices()))["invoices"]
        }
        await request(
            nc, pay(yearly["Bury Council"], 50_000, YEAR_START, f"BACS from {JO.upper()}")
        )
        # Jo books a place for Bury; so does a colleague, whose invoice Jo is sent.
        await publish(
            nc,
            chargeable("b-1", "Jo Bloggs", JO, member_id=bury["member_id"]),
            chargeable(
                "b-2", "Sam Other", "sam.other@bury.example.gov.uk", member_id=bury["member_id"]
            ),
        )
        await eventually(lambda: _is(documents(service), 4), what="the booking invoices")
        by_booking = {
            i["booking_id"]: i["number"] for i in (await request(nc, ListInvoices()))["invoices"]
        }

        # Before: the export lists every place the books hold Jo.
        export = await request(
            nc, ExportPersonFromSubscriptions(email="JO.Bloggs@bury.example.gov.uk", phone=JO_PHONE)
        )
        assert export["service"] == "subscriptions"
        records = export["records"]
        assert sorted(records) == ["booking_charges", "invoices", "members", "mentions"]
        (member,) = records["members"]
        assert (member["name"], member["phone"]) == ("Bury Council", JO_PHONE)
        assert [m["billing_email"] for m in member["memberships"]] == [JO]
        assert sorted(i["number"] for i in records["invoices"]) == sorted(
            [yearly["Bury Council"], by_booking["b-1"], by_booking["b-2"]]
        )
        bury_yearly = next(i for i in records["invoices"] if i["number"] == yearly["Bury Council"])
        assert (bury_yearly["gross"], bury_yearly["paid"], bury_yearly["outstanding"]) == (
            "2000.00",
            "500.00",
            "1500.00",
        )
        assert (bury_yearly["issued_on"], bury_yearly["status"]) == ("2026-04-01", "part_paid")
        (charge,) = records["booking_charges"]
        assert (charge["document"], charge["booker_name"], charge["gross"]) == (
            by_booking["b-1"],
            "Jo Bloggs",
            "180.00",
        )
        assert charge["description"] == "Lean workshop, 10 Jun 2026: a place (booking BK-b-1)"
        assert records["mentions"] == [
            {"in": "payments.reference", "text": f"BACS from {JO.upper()}"}
        ]

        # The search below sees Jo wherever the export said.
        held = {table for table, _, _ in await text_holding(service, JO_TRACES)}
        assert held >= {"members", "memberships", "invoices", "invoice_lines", "payments"}

        before = await books(service)
        erasure = PersonErasureRequested(erasure_id="er-1", email=JO.upper(), phone="+447700900123")
        envelope = Envelope.wrap(erasure).to_bytes()
        for _ in range(2):  # delivered twice: erased and answered once
            await nc.jetstream().publish(erasure.SUBJECT, envelope)
        answer = await answer_to(nc, "er-1")
        assert answer["erased"] == {
            "billing_contacts": 1,
            "contact_phones": 1,
            "document_emails": 3,
            "booker_names": 1,
            "mentions": 1,
        }
        assert answer["kept"] == {"invoices": 3}

        # The books are as they were: numbers, customers, lines, totals, VAT, payments.
        assert await books(service) == before
        # Bury is still a member at its tier, with nobody to write to or ring.
        shown = await request(nc, ShowMember(member="Bury Council"))
        assert (shown["tier"], shown["phone"], len(shown["documents"])) == ("district", None, 3)
        assert is_erased_email(shown["billing_email"])
        assert all(is_erased_email(d["billing_email"]) for d in shown["documents"])
        # Jo's line names nobody; the colleague's still names them.
        jo_line = (await request(nc, ShowInvoice(number=by_booking["b-1"])))["lines"][0]
        sam_line = (await request(nc, ShowInvoice(number=by_booking["b-2"])))["lines"][0]
        assert (jo_line["booker"], jo_line["gross"]) == (None, 18_000)
        assert sam_line["booker"] == "Sam Other"
        html = (await request(nc, ShowInvoice(number=by_booking["b-2"], html=True)))["html"]
        assert "Booked for Sam Other" in html
        bolton = await request(nc, ShowInvoice(number=yearly["Bolton Council"]))
        assert bolton["billing_email"] == "finance@bolton.example.gov.uk"
        # Nothing in any table holds Jo's email, phone or name any more.
        assert await text_holding(service, JO_TRACES) == []
        # The facts the invoices went out in never named a booker in their lines.
        assert not await _stream_holds(nc, (b"Jo Bloggs", b"Sam Other"))
        # Asked what it holds on Jo now, it holds nothing.
        after = await request(nc, ExportPersonFromSubscriptions(email=JO, phone=JO_PHONE))
        assert after["records"] == {}

        # Overdue: Bolton is reminded; Bury's invoices, whose contact was erased, are not.
        clock.on(date(2026, 5, 2))
        automation = service.automation  # type: ignore[attr-defined]
        assert (await automation.tick())["reminders"] == 1
        overdue = await eventually(lambda: facts_on(nc, "subscriptions.invoice.overdue"))
        assert [fact["number"] for fact in overdue] == [yearly["Bolton Council"]]

        # Next year's run still bills Bury (it owes the subscription), to its stand-in:
        # the invoice's fact is the record, and notifications write to no erased address.
        await run_to_end(nc, 2027)
        (next_year,) = [
            i
            for i in (await request(nc, ListInvoices(year=2027)))["invoices"]
            if i["billed_name"] == "Bury Council"
        ]
        assert (next_year["gross"], is_erased_email(next_year["billing_email"])) == (200_000, True)

        # Asked again for the same person: nothing left to erase, and still an answer.
        await publish(nc, PersonErasureRequested(erasure_id="er-2", email=JO))
        again = await answer_to(nc, "er-2")
        assert (again["erased"], again["kept"]) == ({}, {})
        assert len(await facts_on(nc, "subscriptions.person.erased")) == 2


async def test_a_non_member_billed_in_their_own_name_keeps_it_on_their_invoices_only(
    store_settings: Settings, nc: Client
) -> None:
    await ensure_streams(nc.jetstream(), duplicate_window_s=600)
    ann = "Ann.Smith@example.org"
    async with subscriptions(store_settings, clock=Clock(YEAR_START)) as service:
        # Ann books for herself, then cancels in time (a credit note), and books again
        # for a charity that is not a member: the charity is that invoice's customer.
        await publish(
            nc,
            chargeable("b-3", "Ann Smith", ann),
            chargeable("b-4", "Ann Smith", ann, organisation="Example Trust"),
            BookingCancelled(
                booking_id="b-3",
                reference="BK-b-3",
                event_id="e-1",
                cancelled_at=EVENT_STARTS - timedelta(days=10),
                reason="booker",
                was="confirmed",
            ),
        )
        await eventually(lambda: _is(documents(service), 3), what="two invoices, a credit note")
        before = await books(service)
        exported = (await request(nc, ExportPersonFromSubscriptions(email=ann)))["records"]
        assert (len(exported["invoices"]), len(exported["credit_notes"])) == (2, 1)
        assert len(exported["booking_charges"]) == 3

        await publish(nc, PersonErasureRequested(erasure_id="er-ann", email=ann))
        answer = await answer_to(nc, "er-ann")
        assert answer["erased"] == {"document_emails": 3, "booker_names": 3}
        assert answer["kept"] == {"invoices": 2, "credit_notes": 1, "customer_names": 2}

        after = await books(service)
        assert after == before  # money, lines, credit, customers: all as they were
        # Her name stays where the law needs it, as the customer of her own booking's
        # invoice and credit note; nowhere else, and her email nowhere at all.
        assert sorted(await text_holding(service, ("ann.smith", "ann smith"))) == [
            ("invoices", "billed_name", "Ann Smith"),
            ("invoices", "billed_name", "Ann Smith"),
        ]
        customers = sorted(d["customer"][0] for d in after.values())
        assert customers == ["Ann Smith", "Ann Smith", "Example Trust"]


async def test_a_request_for_someone_already_erased_changes_nothing_and_is_answered(
    settings: Settings, nc: Client
) -> None:
    await ensure_streams(nc.jetstream(), duplicate_window_s=600)
    async with subscriptions(settings, clock=Clock(YEAR_START)) as service:
        await publish(nc, chargeable("b-5", "Ann Smith", "ann@example.org"))
        await eventually(lambda: _is(documents(service), 1), what="the invoice")
        # A replayed request, its key deleted: its email is the erased stand-in.
        await publish(nc, PersonErasureRequested(erasure_id="er-old", email=ERASED_EMAIL))
        answer = await answer_to(nc, "er-old")
        assert (answer["erased"], answer["kept"]) == ({}, {})
        (invoice,) = (await request(nc, ListInvoices()))["invoices"]
        assert invoice["billing_email"] == "ann@example.org"
        empty = await request(nc, ExportPersonFromSubscriptions(email="nobody@example.org"))
        assert empty == {"service": "subscriptions", "records": {}}


async def test_a_booking_read_after_its_booker_was_erased_is_billed_naming_nobody(
    settings: Settings, nc: Client
) -> None:
    """A booking fact read once the booker's key is gone carries stand-ins: the fee is
    still owed by the member, and the line names nobody."""
    await ensure_streams(nc.jetstream(), duplicate_window_s=600)
    async with subscriptions(settings, clock=Clock(YEAR_START)) as service:
        member = await request(
            nc,
            JoinMember(
                name="Bury Council",
                tier="district",
                billing_email="finance@bury.example.gov.uk",
                joined_on=YEAR_START,
            ),
        )
        await publish(
            nc, chargeable("b-6", ERASED_NAME, ERASED_EMAIL, member_id=member["member_id"])
        )
        await eventually(lambda: _is(documents(service), 1), what="the invoice")
        (listed,) = (await request(nc, ListInvoices()))["invoices"]
        shown = await request(nc, ShowInvoice(number=listed["number"]))
        assert (shown["billed_name"], shown["gross"]) == ("Bury Council", 18_000)
        assert shown["lines"][0]["booker"] is None
        assert await text_holding(service, ("(erased)", "erased.example")) == []


async def _is(count: Any, expected: int) -> bool:
    return await count == expected


async def _stream_holds(nc: Client, needles: tuple[bytes, ...]) -> bool:
    """Whether any message in the SUBSCRIPTIONS stream holds one of ``needles`` as bytes."""
    js = nc.jetstream()
    info = await js.stream_info("SUBSCRIPTIONS")
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg("SUBSCRIPTIONS", seq)
        except NotFoundError:
            continue
        if any(needle in (msg.data or b"") for needle in needles):
            return True
    return False
