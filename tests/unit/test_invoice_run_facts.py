"""The facts an invoicing run writes are built without Pydantic, a chunk at a time: they
must be exactly what the model would have sent."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from contracts import Envelope
from contracts.subscriptions_v1 import InvoiceIssued
from services.subscriptions.domain.billing import recurring_charge
from services.subscriptions.domain.catalog import Price
from services.subscriptions.invoicing import (
    Billed,
    Priced,
    _rows,
    invoice_issued_data,
    issued_envelope_head,
    wire_form,
)


def _invoice(number: int, billed: Billed, priced: Priced) -> dict[str, object]:
    invoice, _ = _rows(
        priced,
        invoice_id=f"inv-{number}",
        series="INV",
        number=number,
        billed=billed,
        issued_on=date(2026, 4, 1),
        due_on=date(2026, 5, 1),
    )
    return invoice


def test_a_runs_invoice_facts_are_byte_for_byte_what_the_envelope_would_send() -> None:
    charge = recurring_charge(
        year=2026,
        tier_code="district",
        tier_label="District council",
        price=Price(2008, 200_001, 2000),
        starts_on=date(2026, 9, 9),
        ends_on=None,
        refund_leavers=False,
    )
    assert charge is not None
    priced = Priced.of(charge)
    # Not UTC, with microseconds: the envelope says when in UTC, as the model would.
    at = datetime(2026, 4, 1, 6, 0, 1, 123456, tzinfo=timezone(timedelta(hours=1)))
    head = issued_envelope_head(run_id="run-1", occurred_at=at)
    for number, billed in enumerate(
        [
            Billed("m-1", "ms-1", "Bury Council", "ap@bury.gov.uk"),
            Billed("m-2", "ms-2", "Ynys Môn – Cyngor Sir", "cyllid@ynysmon.llyw.cymru", "1 Stryd"),
        ],
        1,
    ):
        data = invoice_issued_data(_invoice(number, billed, priced), priced)
        wire = wire_form(head, f"fact-{number}", data)

        envelope = Envelope.from_bytes(wire)
        assert wire == envelope.to_bytes()
        assert envelope.occurred_at == at.astimezone(UTC)
        assert (envelope.id, envelope.correlation_id) == (f"fact-{number}", "run-1")
        assert InvoiceIssued.model_validate(envelope.data).model_dump(mode="json") == data
        assert envelope.data["billed_name"] == billed.name


def test_documents_sharing_a_charge_do_not_share_their_rows() -> None:
    charge = recurring_charge(
        year=2026,
        tier_code="district",
        tier_label="District council",
        price=Price(2008, 200_000, 0),
        starts_on=date(2026, 4, 1),
        ends_on=None,
        refund_leavers=False,
    )
    assert charge is not None
    priced = Priced.of(charge)
    first, first_lines = _rows(
        priced,
        invoice_id="a",
        series="INV",
        number=1,
        billed=Billed("m-1", "ms-1", "Bury Council", "ap@bury.gov.uk"),
        issued_on=date(2026, 4, 1),
        due_on=date(2026, 5, 1),
    )
    second, second_lines = _rows(
        charge,  # the charge itself, as a single document is issued
        invoice_id="b",
        series="INV",
        number=2,
        billed=Billed("m-2", "ms-2", "Wigan Council", "ap@wigan.gov.uk"),
        issued_on=date(2026, 4, 1),
        due_on=date(2026, 5, 1),
    )
    assert [line["invoice_id"] for line in first_lines + second_lines] == ["a", "b"]
    assert (first["gross_pence"], second["gross_pence"]) == (charge.gross_pence,) * 2
    assert first_lines[0] is not second_lines[0]
