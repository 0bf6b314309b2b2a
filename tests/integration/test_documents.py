"""Documents end to end: the invoice and the credit note a billing contact is emailed are
the PDFs the CLI prints, byte for byte, and say what a UK VAT invoice must; a member's
statement adds up to its documents less its payments; debt ages as the days go by."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
from datetime import date
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from sqlalchemy import select
from typer.testing import CliRunner

from contracts import Envelope
from contracts.money import Money
from contracts.subscriptions_v1 import (
    ChangeBillingContact,
    ChangeTier,
    DocumentLine,
    InvoiceIssued,
    InvoiceSummary,
    JoinMember,
    ListInvoices,
    ShowDocument,
    ShowInvoice,
    ShowMember,
    ShowStatement,
    VoidInvoice,
)
from contracts.system_v1 import Reply
from kernel.commands import CommandFailed, request
from kernel.settings import Settings
from services.notifications import store as notifications_store
from services.notifications.app import create_service as notifications_service
from tests.conftest import Mailbox, eventually
from tests.finance_support import Clock, pay
from tests.notifications_support import quick
from tests.pdf_support import pdf_rows, pdf_text
from tests.subscriptions_helpers import run_to_end, subscriptions
from vestry.cli import app

YEAR_START = date(2026, 4, 1)
BILLING = {
    "partnership_name": "North West Improvement Partnership",
    "partnership_address": "Town Hall, Albert Square, Manchester M60 2LA",
    "partnership_vat_number": "GB 246 8135 79",
    "payment_instructions": "Pay by BACS to sort code 40-11-62, account 21436587.",
}
BURY = "accounts@bury.example.gov.uk"

runner = CliRunner()


async def vestry(settings: Settings, *args: str) -> tuple[int, Any, str]:
    """The CLI with --json, in a thread (it runs its own event loop)."""
    result = await asyncio.to_thread(
        runner.invoke, app, ["--nats", settings.nats_url, "--json", *args]
    )
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError:
        data = None
    return result.exit_code, data, result.output


def attached_pdfs(mailbox: Mailbox) -> dict[str, bytes]:
    """Every PDF attached to a captured mail, by file name; each mail parsed strictly."""
    found = {}
    strict = email.policy.default.clone(raise_on_defect=True)
    for mail in mailbox.mails():
        message = email.message_from_bytes(mail.path.read_bytes(), policy=strict)
        for part in message.iter_attachments():  # type: ignore[attr-defined]
            if part.get_content_type() == "application/pdf":
                found[part.get_filename()] = part.get_payload(decode=True)
    return found


async def printed(nc: Client, number: str) -> bytes:
    answer = await request(nc, ShowDocument(number=number))
    return base64.b64decode(answer["content_base64"])


async def test_the_emailed_invoice_and_credit_note_are_the_clis_pdfs_byte_for_byte(
    settings: Settings, nc: Client, mailbox: Mailbox, tmp_path: Path
) -> None:
    clock = Clock(YEAR_START)
    async with (
        subscriptions(settings, clock=clock, **BILLING),
        notifications_service(quick(settings)).running(),
    ):
        await request(
            nc,
            JoinMember(
                name="Bury Council", tier="upper-tier", billing_email=BURY, joined_on=YEAR_START
            ),
        )
        await request(
            nc,
            ChangeBillingContact(
                member="Bury Council",
                billing_address="Town Hall, Knowsley Street, Bury BL9 0SW",
                purchase_order="PO-2026-17",
            ),
        )
        await run_to_end(nc, 2026, issued_on=YEAR_START)
        clock.on(date(2026, 4, 10))
        moved = await request(
            nc,
            ChangeTier(member="Bury Council", tier="district", effective_on=date(2026, 10, 1)),
        )
        assert moved["documents"] == ["CN-000001", "INV-000002"]
        emailed = await eventually(
            lambda: (found := attached_pdfs(mailbox)) and len(found) == 3 and found,
            timeout=60,
            what="the two invoices and the credit note mailed with their PDFs",
        )
        assert set(emailed) == {"INV-000001.pdf", "INV-000002.pdf", "CN-000001.pdf"}

        for number in ("INV-000001", "CN-000001"):
            path = tmp_path / f"{number}.pdf"
            code, shown, output = await vestry(
                settings, "invoices", "show", number, "--pdf", str(path)
            )
            assert code == 0, output
            assert shown["number"] == number
            assert path.read_bytes() == emailed[f"{number}.pdf"], number

        # Paid later: the document is the one issued, so it prints the same bytes still.
        await request(nc, pay("INV-000001", 100_000, date(2026, 4, 20), "BACS 77"))
        assert await printed(nc, "INV-000001") == emailed["INV-000001.pdf"]

    invoice = pdf_text(emailed["INV-000001.pdf"])
    for shown in (
        "North West Improvement Partnership",
        "Town Hall Albert Square Manchester M60 2LA",
        "VAT registration number GB 246 8135 79",
        "Bury Council Town Hall Knowsley Street Bury BL9 0SW",
        "Your purchase order: PO-2026-17",
        "Invoice number INV-000001 Invoice date 1 April 2026 Tax point 1 April 2026",
        "Payment due 1 May 2026",
        "Pay by BACS to sort code 40-11-62, account 21436587.",
        "Please quote INV-000001",
    ):
        assert shown in invoice, shown
    assert "Total to pay £9,000.00" in pdf_rows(emailed["INV-000001.pdf"])
    note = pdf_text(emailed["CN-000001.pdf"])
    for shown in (
        "Credit note CN-000001",
        "VAT registration number GB 246 8135 79",
        "Credits invoice INV-000001",
        "Reason for credit: change of tier",
    ):
        assert shown in note, shown


async def test_an_invoice_email_waits_for_its_document_until_subscriptions_answers(
    settings: Settings, nc: Client, mailbox: Mailbox, streams: None
) -> None:
    """Notifications asks for the PDF when it sends; with nobody to answer, the email is
    retried, not sent bare, and goes with the document once it can be had."""
    fact = InvoiceIssued(
        invoice_id="i-9",
        number="INV-000009",
        purpose="recurring",
        year=2026,
        member_id="m-9",
        billed_name="Wyre Council",
        billing_email="accounts@wyre.example.gov.uk",
        issued_on=YEAR_START,
        due_on=date(2026, 5, 1),
        lines=[
            DocumentLine(
                description="District subscription",
                months=12,
                net=Money(amount_minor=200_000),
                vat=Money(amount_minor=0),
            )
        ],
        net=Money(amount_minor=200_000),
        vat=Money(amount_minor=0),
        gross=Money(amount_minor=200_000),
    )
    envelope = Envelope.wrap(fact)
    async with notifications_service(
        quick(settings, delivery_retry_s=[0.5] * 20)
    ).running() as notes:
        await nc.jetstream().publish(
            fact.SUBJECT, envelope.to_bytes(), headers={"Nats-Msg-Id": envelope.id}
        )

        async def waiting() -> str | None:
            async with notes.sessions() as session:
                row = await session.scalar(select(notifications_store.Delivery))
            return row.last_error if row is not None and row.status == "pending" else None

        error = await eventually(waiting, what="the email waiting for its document")
        assert "nothing answers subscriptions.cmd.show_document" in error
        assert mailbox.mails() == []

        pdf = b"%PDF-1.7 INV-000009\n%%EOF\n"

        async def show_document(msg: Msg) -> None:
            answer = {
                "number": "INV-000009",
                "kind": "invoice",
                "filename": "INV-000009.pdf",
                "media_type": "application/pdf",
                "content_base64": base64.b64encode(pdf).decode(),
            }
            await msg.respond(Reply(ok=True, data=answer).model_dump_json().encode())

        await nc.subscribe(ShowDocument.SUBJECT, queue="subscriptions", cb=show_document)
        mailed = await eventually(lambda: attached_pdfs(mailbox), what="the email, with its PDF")
    assert mailed == {"INV-000009.pdf": pdf}
    assert len(mailbox.mails()) == 1


async def test_a_statement_is_the_members_documents_less_its_payments_and_ages_with_the_clock(
    settings: Settings, nc: Client, tmp_path: Path
) -> None:
    clock = Clock(YEAR_START)
    async with subscriptions(settings, clock=clock, **BILLING):
        for name, tier in (
            ("Bury Council", "upper-tier"),
            ("Bolton Council", "upper-tier"),
            ("Wigan Council", "district"),
        ):
            email_slug = name.split()[0].lower()
            await request(
                nc,
                JoinMember(
                    name=name,
                    tier=tier,
                    billing_email=f"accounts@{email_slug}.example.gov.uk",
                    joined_on=YEAR_START,
                ),
            )
        await run_to_end(nc, 2026, issued_on=YEAR_START)  # due 1 May 2026
        yearly = {i["billed_name"]: i for i in (await request(nc, ListInvoices()))["invoices"]}
        bury = yearly["Bury Council"]["number"]
        clock.on(date(2026, 4, 20))
        await request(nc, pay(bury, 300_000, date(2026, 4, 20), "BACS 1"))
        # Bury moves down from October, before paying the rest: half its year at the
        # upper tier is credited and the district half invoiced.
        clock.on(date(2026, 6, 1))
        moved = await request(
            nc, ChangeTier(member="Bury Council", tier="district", effective_on=date(2026, 10, 1))
        )
        clock.on(date(2026, 6, 15))
        await request(nc, pay(moved["documents"][1], 50_000, date(2026, 6, 15), "BACS 2"))
        # Bolton's invoice is void: it was never owed.
        await request(nc, VoidInvoice(invoice=yearly["Bolton Council"]["number"], reason="wrong"))

        statement = await request(nc, ShowStatement(member="Bury Council"))
        # The statement against the member's own documents and payments, added up here.
        documents = (await request(nc, ShowMember(member="Bury Council")))["documents"]
        invoiced = sum(d["gross"] for d in documents if d["kind"] == "invoice")
        credited = sum(d["gross"] for d in documents if d["kind"] == "credit_note")
        paid = 0
        for d in documents:
            paid += sum(
                p["amount"]
                for p in (await request(nc, ShowInvoice(number=d["number"])))["payments"]
            )
        assert (invoiced, credited, paid) == (900_000 + 100_000, 450_000, 350_000)
        assert statement["balance"] == invoiced - credited - paid == 200_000
        entries = statement["entries"]
        assert [(e["on"], e["kind"], e["number"]) for e in entries] == [
            ("2026-04-01", "invoice", bury),
            ("2026-04-20", "payment", bury),
            ("2026-06-01", "invoice", "INV-000004"),
            ("2026-06-01", "credit_note", "CN-000001"),
            ("2026-06-15", "payment", "INV-000004"),
        ]
        assert [e["balance"] for e in entries] == [900_000, 600_000, 700_000, 250_000, 200_000]
        assert statement["outstanding"] - statement["credit_held"] == statement["balance"]
        assert sum(statement["aged"].values()) == statement["outstanding"]
        # As at an earlier day, only what had happened by then.
        earlier = await request(nc, ShowStatement(member="Bury Council", on=date(2026, 4, 15)))
        assert (earlier["balance"], len(earlier["entries"])) == (900_000, 1)
        # Bolton owes nothing: its only invoice is void.
        bolton = await request(nc, ShowStatement(member="Bolton Council"))
        assert (bolton["balance"], bolton["entries"]) == (0, [])

        # Debt ages as the days go by: Wigan's £2,000, due 1 May, never paid.
        for day, bucket in (
            (date(2026, 5, 1), "not_due"),
            (date(2026, 5, 31), "1-30"),
            (date(2026, 6, 30), "31-60"),
            (date(2026, 7, 30), "61-90"),
            (date(2026, 7, 31), "over_90"),
        ):
            clock.on(day)
            wigan = await request(nc, ShowStatement(member="Wigan Council"))
            assert wigan["on"] == day.isoformat()
            assert {k: v for k, v in wigan["aged"].items() if v} == {bucket: 200_000}, day
            summary = await request(nc, InvoiceSummary(year=2026))
            assert summary["on"] == day.isoformat()
            assert sum(summary["aged"].values()) == summary["totals"]["outstanding"]
            for tier in summary["tiers"]:
                assert sum(tier["aged"].values()) == tier["outstanding"], tier["tier"]
            district = next(t for t in summary["tiers"] if t["tier"] == "district")
            assert district["aged"][bucket] >= 200_000

        # The CLI writes the statement's PDF and HTML; the PDF is the command's, byte for byte.
        pdf, html = tmp_path / "bury.pdf", tmp_path / "bury.html"
        code, shown, output = await vestry(
            settings,
            "members",
            "statement",
            "Bury Council",
            "--on",
            "2026-07-31",
            "--pdf",
            str(pdf),
            "--html",
            str(html),
        )
        assert code == 0, output
        assert shown["balance"] == 200_000 and "document" not in shown
        asked = await request(
            nc, ShowStatement(member="Bury Council", on=date(2026, 7, 31), format="pdf")
        )
        assert pdf.read_bytes() == base64.b64decode(asked["document"]["content_base64"])
        assert asked["document"]["filename"] == "statement-bury-council-2026-07-31.pdf"
        assert "Statement of account" in html.read_text()

    text, rows = pdf_text(pdf.read_bytes()), pdf_rows(pdf.read_bytes())
    assert "Statement of account" in text and "Statement date 31 July 2026" in text
    assert "VAT registration number GB 246 8135 79" in text
    assert "Balance due £2,000.00" in rows
    assert "Pay by BACS to sort code 40-11-62, account 21436587." in text


async def test_an_unknown_document_or_member_is_refused_by_name(
    settings: Settings, nc: Client
) -> None:
    async with subscriptions(settings):
        for command, field in (
            (ShowDocument(number="INV-999999"), "number"),
            (ShowStatement(member="Nowhere Council"), "member"),
        ):
            try:
                await request(nc, command)
            except CommandFailed as refused:
                assert (refused.error.code, refused.error.field) == ("not_found", field)
            else:
                raise AssertionError(f"{command.TYPE} was not refused")
