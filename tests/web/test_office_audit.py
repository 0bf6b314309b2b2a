"""What staff do in the back office reaches the audit stream (OPS) once, with their name:
recorded by the service that acts. Staff account changes are recorded by the web
service itself, once even when the command is sent again."""

from __future__ import annotations

import asyncio
import html
import re
from datetime import timedelta
from typing import Any

import nats.errors
import pytest
from nats.aio.client import Client

from contracts import Envelope
from contracts.envelope import Actor
from contracts.events_v1 import CancelEvent, PublishEvent, UpdateEvent
from kernel.audit_log import records
from kernel.commands import request, request_raw
from kernel.settings import Settings
from services.web.office import operations
from services.web.office.commands import DisableStaff, SetStaffRoles
from tests.conftest import eventually
from tests.events_support import EVENT_DAY, event_command
from tests.integration.test_audit_stream import two_invoices
from tests.web.test_office_access import add_staff, staff_client
from tests.web_support import form_token, running_site
from vestry.demo_invoicing import current_financial_year

FIONA = "fiona.finance@partnership.example.org"
OLIVER = "oliver.operator@partnership.example.org"
JOINING = ("join_member", "import_members")


async def audit_log(nc: Client, count: int) -> list[dict[str, Any]]:
    """The OPS records once there are ``count``; a moment later, to show no more come.
    Joining the members a test starts from is recorded too (see
    test_joining_and_importing_members_are_recorded_without_addresses); the tests look
    at what follows."""
    js = nc.jetstream()

    async def after_joining() -> list[dict[str, Any]]:
        found = await records(js, limit=1000)
        return [row for row in found if row["action"] not in JOINING]

    async def enough() -> list[dict[str, Any]] | None:
        found = await after_joining()
        return found if len(found) >= count else None

    await eventually(enough, what=f"{count} records in OPS")
    await asyncio.sleep(0.5)  # a second record of anything would be in by now
    return await after_joining()


async def test_a_payment_and_a_void_in_the_office_are_each_recorded_once_with_the_staff_name(
    settings: Settings, nc: Client
) -> None:
    async with running_site(settings) as site:
        first, second = await two_invoices(nc)
        fiona = await add_staff(nc, FIONA, "finance")
        async with staff_client(site, FIONA) as client:
            csrf = await form_token(client, f"/office/invoices/{first}/payment")
            paid = await client.post(
                f"/office/invoices/{first}/payment",
                data={
                    "csrf_token": csrf,
                    "amount": "500.00",
                    "received_on-day": "3",
                    "received_on-month": "5",
                    "received_on-year": str(current_financial_year()),
                    "reference": "BACS 4471",
                },
            )
            assert paid.status_code == 303
            csrf = await form_token(client, f"/office/invoices/{second}/void")
            voided = await client.post(
                f"/office/invoices/{second}/void",
                data={"csrf_token": csrf, "reason": "Billed in error"},
            )
            assert voided.status_code == 303
            # Refused by the service (it is void now): nothing recorded.
            again = await client.post(
                f"/office/invoices/{second}/void",
                data={"csrf_token": csrf, "reason": "Billed in error"},
            )
            assert again.status_code == 409
        log = await audit_log(nc, 4)
        # The operator's page shows who, what, when, from where and the result.
        await add_staff(nc, OLIVER, "operator")
        async with staff_client(site, OLIVER) as oliver:
            page = await oliver.get("/office/operations/audit", params={"by": "Fiona"})
        shown = audit_rows(page.text)
        assert [(r["Action"], r["Done by"], r["From"], r["What it acted on"]) for r in shown] == [
            ("void_invoice", "Fiona Finance", "127.0.0.1", second),
            ("record_payment", "Fiona Finance", "127.0.0.1", first),
        ]
        assert all(
            re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", r["When (UK time)"]) for r in shown
        )

    assert [row["action"] for row in log] == [
        "run_invoicing",
        "staff_add",
        "record_payment",
        "void_invoice",
    ]
    for row, target in ((log[2], first), (log[3], second)):
        assert (row["by"], row["by_kind"], row["staff_id"]) == (
            "Fiona Finance",
            "staff",
            fiona["staff_id"],
        )
        assert (row["address"], row["via"], row["service"], row["target"]) == (
            "127.0.0.1",
            "development",
            "subscriptions",
            target,
        )
    assert log[2]["filters"]["amount"]["amount_minor"] == 50_000


async def test_staff_account_changes_are_recorded_by_the_web_service_once_each(
    settings: Settings, nc: Client
) -> None:
    async with running_site(settings):
        added = await add_staff(nc, FIONA, "finance")
        roles = Envelope.wrap(SetStaffRoles(staff=FIONA, roles=["finance", "comms"]))
        first = await request_raw(nc, SetStaffRoles.SUBJECT, roles.to_bytes())
        # The same command again (the web keeps no answers): done again, recorded once.
        second = await request_raw(nc, SetStaffRoles.SUBJECT, roles.to_bytes())
        assert first.ok and second.ok
        await request(nc, DisableStaff(staff=FIONA))
        await request(nc, DisableStaff(staff=FIONA, disabled=False))
        refused = await request_raw(
            nc, DisableStaff.SUBJECT, Envelope.wrap(DisableStaff(staff="nobody@x.org")).to_bytes()
        )
        assert not refused.ok
        log = await audit_log(nc, 4)

    assert [row["action"] for row in log] == [
        "staff_add",
        "staff_roles",
        "staff_disable",
        "staff_enable",
    ]
    assert all(row["service"] == "web" and row["by"] == "development" for row in log)
    assert {row["target"] for row in log} == {added["staff_id"]}
    assert log[0]["filters"] == {"roles": ["finance"]}
    assert log[1]["filters"] == {"roles": ["comms", "finance"]}
    assert log[1]["request_id"] == roles.id
    assert log[2]["result"] == {"sessions_ended": 0}


async def test_an_events_officers_create_publish_move_and_cancel_are_each_recorded_once(
    settings: Settings, nc: Client
) -> None:
    """What the events pages send, as they send it: each command under the officer's
    name (the envelope's actor), and recorded once by the events service."""
    officer = Actor(id="st-7", name="Eve Events", address="10.0.0.7")

    async def as_officer(command: Any) -> dict[str, Any]:
        envelope = Envelope.wrap(command, actor=officer)
        reply = await request_raw(nc, command.SUBJECT, envelope.to_bytes())
        again = await request_raw(nc, command.SUBJECT, envelope.to_bytes())  # a retry
        assert reply.ok and again == reply, reply.error
        return reply.data or {}

    async with running_site(settings):
        created = await as_officer(event_command())
        event_id = created["event_id"]
        await as_officer(PublishEvent(event_id=event_id))
        moved = EVENT_DAY + timedelta(days=1)
        await as_officer(
            UpdateEvent(event_id=event_id, starts_at=moved, ends_at=moved + timedelta(hours=3))
        )
        await as_officer(CancelEvent(event_id=event_id, reason="The speaker is ill."))
        log = await audit_log(nc, 4)

    assert [row["action"] for row in log] == [
        "create_event",
        "publish_event",
        "update_event",
        "cancel_event",
    ]
    assert all(
        (row["by"], row["by_kind"], row["staff_id"], row["service"])
        == ("Eve Events", "staff", "st-7", "events")
        for row in log
    )
    assert log[2]["filters"]["changed"] == ["booking_closes_at", "ends_at", "starts_at"]


async def test_the_operator_reads_the_log_on_its_page_by_action_by_person_and_page_by_page(
    settings: Settings, nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(operations, "AUDIT_PAGE", 2)
    async with running_site(settings) as site:
        await add_staff(nc, FIONA, "finance")
        await add_staff(nc, OLIVER, "operator")
        for roles in (["finance", "comms"], ["finance"], ["finance", "events"]):
            await request(nc, SetStaffRoles(staff=FIONA, roles=roles))  # type: ignore[arg-type]
        log = await audit_log(nc, 5)
        newest_first = [row["action"] for row in log[::-1]]
        async with staff_client(site, OLIVER) as oliver:
            first = await oliver.get("/office/operations/audit")
            assert first.status_code == 200
            assert actions_on(first.text) == newest_first[:2]
            assert "development" in first.text  # who: `vestry staff` here runs without users
            older = re.search(r'href="(/office/operations/audit\?before=\d+)"', first.text)
            assert older is not None
            second = await oliver.get(html.unescape(older[1]))
            assert actions_on(second.text) == newest_first[2:4]
            assert "Latest actions" in second.text

            only_adds = await oliver.get("/office/operations/audit", params={"action": "staff_add"})
            assert actions_on(only_adds.text) == ["staff_add", "staff_add"]
            # A search reads so many records a page, then offers to look further back.
            monkeypatch.setattr(operations, "AUDIT_EXAMINED", 3)
            searched = await oliver.get("/office/operations/audit", params={"action": "staff_add"})
            assert actions_on(searched.text) == []  # the three role changes, newest
            further = re.search(
                r'href="(/office/operations/audit\?[^"]*before=\d+)"', searched.text
            )
            assert further is not None and "action=staff_add" in further[1]
            found = await oliver.get(html.unescape(further[1]))
            assert actions_on(found.text) == ["staff_add", "staff_add"]
            assert "Older actions" not in found.text  # the first record was among them
            monkeypatch.setattr(operations, "AUDIT_EXAMINED", 2_000)
            nobody = await oliver.get("/office/operations/audit", params={"by": "Nobody Known"})
            assert actions_on(nobody.text) == [] and "No action recorded matches" in nobody.text
            # What a stranger might put in the address: read as text, never as HTML.
            for query in (
                {"before": "-1"},
                {"before": "9" * 40},
                {"before": "abc"},
                {"action": "<script>alert(1)</script>"},
                {"by": "\x00\x1b[31m" + "x" * 5_000},
            ):
                odd = await oliver.get("/office/operations/audit", params=query)
                assert odd.status_code == 200, query
                assert "<script>alert(1)</script>" not in odd.text
        async with staff_client(site, FIONA) as fiona:  # finance: not an operator
            assert (await fiona.get("/office/operations/audit")).status_code == 403


def audit_rows(page: str) -> list[dict[str, str]]:
    """The audit page's table, top to bottom, each row by its column headings."""
    table = re.search(r'<table[^>]*id="audit".*?</table>', page, re.S)
    if table is None:
        return []
    rows = re.findall(r"<tr class=\"govuk-table__row\">(.*?)</tr>", table[0], re.S)
    cells = [
        [html.unescape(c) for c in re.findall(r"<t[dh][^>]*>\s*(.*?)\s*</t[dh]>", row, re.S)]
        for row in rows
    ]
    return [dict(zip(cells[0], row, strict=True)) for row in cells[1:]]


def actions_on(page: str) -> list[str]:
    """The actions in the audit page's table, top to bottom."""
    return [row["Action"] for row in audit_rows(page)]


async def test_the_audit_page_says_so_when_the_log_cannot_be_read(
    settings: Settings, nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_answer(*args: Any, **kwargs: Any) -> Any:
        raise nats.errors.TimeoutError

    async with running_site(settings) as site:
        await add_staff(nc, OLIVER, "operator")
        monkeypatch.setattr(operations, "page_of_records", no_answer)
        async with staff_client(site, OLIVER) as oliver:
            page = await oliver.get("/office/operations/audit", params={"action": "void_invoice"})
    assert page.status_code == 503
    assert "The audit log could not be read just now" in page.text
    assert audit_rows(page.text) == [] and "Older actions" not in page.text
