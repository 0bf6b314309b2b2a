"""`vestry members|invoice-run|invoices|payments` against a running subscriptions service."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kernel.settings import Settings
from tests.finance_support import Clock
from tests.subscriptions_helpers import subscriptions
from vestry.cli import app

runner = CliRunner()

GOOD_CSV = """name,tier,billing_email,joined_on,reference,phone
Bolton Council,upper-tier,ap@bolton.gov.uk,2026-04-01,PO-1,0161 000 0000
Bury Council,district,ap@bury.gov.uk,2026-04-01,,
Chorley Council,district,ap@chorley.gov.uk,2026-10-15,,
"""

BAD_CSV = """name,tier,billing_email,joined_on
Bolton Council,upper-tier,ap@bolton.gov.uk,2026-04-01
Bury Council,district,not-an-email,2026-04-01
Chorley Council,district,ap@chorley.gov.uk,15/10/2026
bolton council,district,ap2@bolton.gov.uk,2026-04-01
"""


async def vestry(settings: Settings, *args: str) -> tuple[int, Any, str]:
    """Run the CLI (in a thread: it runs its own event loop) with --json."""
    result = await asyncio.to_thread(
        runner.invoke, app, ["--nats", settings.nats_url, "--json", *args]
    )
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError:
        data = None
    return result.exit_code, data, result.output


async def test_csv_import_reports_every_bad_row_by_line_and_imports_none(
    settings: Settings, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_CSV)
    good = tmp_path / "good.csv"
    good.write_text(GOOD_CSV)
    async with subscriptions(settings):
        code, data, _ = await vestry(settings, "members", "import", str(bad))
        assert code == 1
        problems = data["error"]["problems"]
        assert [p.split(":")[0] for p in problems] == ["line 3", "line 4", "line 5"]
        assert "email" in problems[0] and "date" in problems[1] and "line 2" in problems[2]
        assert (await vestry(settings, "members", "ls"))[1] == []

        code, data, output = await vestry(settings, "members", "import", str(good))
        assert code == 0, output
        assert data["joined"] == 3
        code, data, _ = await vestry(settings, "members", "import", str(good))
        assert code == 1 and data["error"]["code"] == "conflict"
        assert "line 2: Bolton Council is already a member" in data["error"]["message"]
        assert len((await vestry(settings, "members", "ls"))[1]) == 3

        unknown_tier = tmp_path / "unknown-tier.csv"
        unknown_tier.write_text(
            "name,tier,billing_email,joined_on\n"
            "Wyre Council,district,ap@wyre.gov.uk,2026-04-01\n"
            "Fylde Council,platinum,ap@fylde.gov.uk,2026-04-01\n"
        )
        code, data, _ = await vestry(settings, "members", "import", str(unknown_tier))
        assert code == 1 and data["error"]["code"] == "invalid"
        assert "line 3: unknown tier 'platinum'" in data["error"]["message"]
        assert len((await vestry(settings, "members", "ls"))[1]) == 3  # Wyre was not imported
        code, data, _ = await vestry(
            settings,
            "members",
            "add",
            "--name",
            "Wyre Council",
            "--tier",
            "gold",
            "--email",
            "a@wyre.gov.uk",
            "--joined",
            "2026-04-01",
        )
        assert code == 1 and (data["error"]["code"], data["error"]["field"]) == ("invalid", "tier")


async def test_finance_officers_year_through_the_cli(settings: Settings, tmp_path: Path) -> None:
    members = tmp_path / "members.csv"
    members.write_text(GOOD_CSV)
    # The service's day is the run's: a run dated 1 April is not backdated on it.
    async with subscriptions(settings, clock=Clock(date(2026, 4, 1))):
        assert (await vestry(settings, "members", "import", str(members)))[0] == 0
        code, preview, _ = await vestry(settings, "invoice-run", "--year", "2026", "--dry-run")
        assert code == 0 and preview["to_issue"] == 3
        assert preview["net"] == 900_000 + 200_000 + 100_000  # Chorley: Oct–Mar, 6 months

        code, record, output = await vestry(
            settings, "invoice-run", "--year", "2026", "--issued-on", "2026-04-01"
        )
        assert code == 0, output
        assert (record["status"], record["issued"], record["gross"]) == ("completed", 3, 1_200_000)
        code, again, _ = await vestry(settings, "invoice-run", "--year", "2026")
        assert (again["issued"], again["already_billed"]) == (0, 3)
        code, status, _ = await vestry(settings, "invoice-run", "--status", "--year", "2026")
        assert [r["issued"] for r in status["runs"]] == [0, 3]

        html = tmp_path / "inv1.html"
        code, shown, _ = await vestry(
            settings, "invoices", "show", "INV-000001", "--html", str(html)
        )
        assert code == 0 and shown["billed_name"] == "Bolton Council"
        assert "Bolton Council" in html.read_text() and "£9,000.00" in html.read_text()

        code, refused, _ = await vestry(
            settings,
            "payments",
            "record",
            "--invoice",
            "INV-000002",
            "--amount",
            "2,000.01",
            "--on",
            "2026-04-20",
        )
        assert code == 1 and refused["error"]["code"] == "overpayment"
        assert "£2,000.00 outstanding" in refused["error"]["message"]
        code, paid, _ = await vestry(
            settings,
            "payments",
            "record",
            "--invoice",
            "INV-000002",
            "--amount",
            "500",
            "--on",
            "2026-04-20",
            "--ref",
            "BACS 123",
        )
        assert (code, paid["status"], paid["outstanding"]) == (0, "part_paid", 150_000)
        code, _, _ = await vestry(
            settings,
            "payments",
            "record",
            "--invoice",
            "INV-000404",
            "--amount",
            "1",
            "--on",
            "2026-04-20",
        )
        assert code == 1

        code, summary, _ = await vestry(
            settings, "invoices", "summary", "--year", "2026", "--on", "2026-06-15"
        )
        assert summary["totals"] == {
            "invoices": 3,
            "net": 1_200_000,
            "vat": 0,
            "billed": 1_200_000,
            "credited": 0,
            "paid": 50_000,
            "outstanding": 1_150_000,
        }
        assert summary["aged"]["31-60"] == 1_150_000
        code, overdue, _ = await vestry(settings, "invoices", "ls", "--status", "part_paid")
        assert [i["number"] for i in overdue] == ["INV-000002"]

        code, changed, _ = await vestry(
            settings,
            "members",
            "change-tier",
            "Bury Council",
            "--tier",
            "upper-tier",
            "--on",
            "2026-10-01",
        )
        assert code == 0 and changed["documents"] == ["CN-000001", "INV-000004"]
        code, left, _ = await vestry(
            settings, "members", "leave", "Chorley Council", "--on", "2027-01-31"
        )
        assert code == 0 and left["documents"] == []  # the reference catalog does not refund
        code, shown, _ = await vestry(settings, "members", "show", "bury council")
        assert shown["tier"] == "upper-tier" and len(shown["documents"]) == 3


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (
            ["payments", "record", "--invoice", "1", "--amount", "ten", "--on", "2026-04-01"],
            "amount",
        ),
        (
            ["payments", "record", "--invoice", "1", "--amount", "10", "--on", "April"],
            "received_on",
        ),
        (["invoice-run", "--year", "26"], "year"),
    ],
)
def test_bad_input_is_refused_before_anything_is_sent(
    monkeypatch: pytest.MonkeyPatch, args: list[str], field: str
) -> None:
    result = runner.invoke(app, ["--nats", "nats://127.0.0.1:1", "--json", *args])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["field"] == field


async def test_a_void_invoice_is_reissued_through_the_cli(
    settings: Settings, tmp_path: Path
) -> None:
    members = tmp_path / "members.csv"
    members.write_text(GOOD_CSV)
    async with subscriptions(settings):
        assert (await vestry(settings, "members", "import", str(members)))[0] == 0
        assert (await vestry(settings, "invoice-run", "--year", "2026"))[0] == 0
        code, _, _ = await vestry(
            settings, "invoices", "void", "INV-000002", "--reason", "sent to the wrong council"
        )
        assert code == 0
        code, reissued, output = await vestry(settings, "invoices", "reissue", "INV-000002")
        assert code == 0, output
        assert (reissued["invoice"], reissued["replaces"]) == ("INV-000004", "INV-000002")
        code, refused, _ = await vestry(settings, "invoices", "reissue", "INV-000002")
        assert (code, refused["error"]["code"]) == (1, "conflict")
        code, listed, _ = await vestry(settings, "invoices", "ls", "--year", "2026")
        assert [(i["number"], i["status"]) for i in listed] == [
            ("INV-000001", "issued"),
            ("INV-000002", "void"),
            ("INV-000003", "issued"),
            ("INV-000004", "issued"),
        ]
        plain = await asyncio.to_thread(
            runner.invoke, app, ["--nats", settings.nats_url, "invoices", "reissue", "INV-000001"]
        )
        assert plain.exit_code == 1 and "not void" in plain.output


async def test_a_billing_contact_changes_and_a_leaver_rejoins_through_the_cli(
    settings: Settings, tmp_path: Path
) -> None:
    members = tmp_path / "members.csv"
    members.write_text(GOOD_CSV)
    async with subscriptions(settings, clock=Clock(date(2026, 4, 1))):
        assert (await vestry(settings, "members", "import", str(members)))[0] == 0
        code, contact, output = await vestry(
            settings,
            "members",
            "contact",
            "Bury Council",
            "--email",
            "payables@bury.gov.uk",
            "--address",
            "Town Hall, Bury BL9 0SW",
            "--po",
            "PO-77",
        )
        assert code == 0, output
        assert (contact["billing_email"], contact["purchase_order"]) == (
            "payables@bury.gov.uk",
            "PO-77",
        )
        assert (await vestry(settings, "invoice-run", "--year", "2026"))[0] == 0
        code, shown, _ = await vestry(settings, "invoices", "show", "INV-000002")
        assert (shown["billed_name"], shown["purchase_order"]) == ("Bury Council", "PO-77")
        code, refused, _ = await vestry(settings, "members", "contact", "Bury Council")
        assert (code, refused["error"]["code"]) == (1, "invalid")

        assert (
            await vestry(settings, "members", "leave", "Chorley Council", "--on", "2026-12-31")
        )[0] == 0
        code, rejoined, output = await vestry(
            settings,
            "members",
            "rejoin",
            "Chorley Council",
            "--tier",
            "upper-tier",
            "--on",
            "2027-06-01",
        )
        assert code == 0, output
        assert rejoined["pays_from"] == "2027-06-01"
        plain = await asyncio.to_thread(
            runner.invoke,
            app,
            ["--nats", settings.nats_url, "members", "show", "Bury Council"],
        )
        assert "purchase order: PO-77" in plain.output and "Town Hall" in plain.output
