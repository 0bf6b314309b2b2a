"""What the back office asks of the notifications service: a broadcast previewed before it
goes (rendered as it will be, its SMS counted as the gateway counts it, the people it will
reach by each channel), the ledger a page at a time with what needs someone first, and
contacts searched by address, name or organisation."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from nats.aio.client import Client

from contracts.notifications_v1 import (
    AddContact,
    ListContacts,
    ListDeliveries,
    PreviewBroadcast,
    SendBroadcast,
)
from kernel.commands import CommandFailed, request
from kernel.settings import Settings
from services.notifications import domain
from services.notifications.app import create_service
from tests.conftest import eventually
from tests.node import run_node_json
from tests.notifications_support import deliveries, quick, scripted_smtp
from tests.unit.test_sms_segments import COUNT_BOTH

NOTICE = {
    "headline": "Bin collections move a day later next week",
    "body": "Because of the bank holiday, every collection from Monday moves one day later.",
}


async def add(nc: Client, n: int, **fields: object) -> None:
    values: dict[str, object] = {
        "email": f"officer{n}@council{n}.example.gov.uk",
        "name": f"Officer {n}",
    }
    values.update(fields)
    await request(nc, AddContact(**values))


async def refusal(nc: Client, command: PreviewBroadcast | ListDeliveries) -> tuple[str, str]:
    with pytest.raises(CommandFailed) as refused:
        await request(nc, command)
    return refused.value.error.code, refused.value.error.field or ""


async def test_a_preview_renders_the_broadcast_counts_its_sms_and_who_it_reaches(
    settings: Settings, nc: Client
) -> None:
    async with create_service(quick(settings)).running() as notes:
        await add(nc, 1, mobile="07400 100001", sms_consent=True, topics=["waste_and_recycling"])
        await add(nc, 2, mobile="07400 100002", topics=["waste_and_recycling"])  # no SMS consent
        await add(nc, 3, topics=["waste_and_recycling"], email_consent=False)
        await add(nc, 4, mobile="07400 100004", sms_consent=True, topics=["warp"])

        preview = await request(
            nc, PreviewBroadcast(topic="waste_and_recycling", template="broadcast", data=NOTICE)
        )
        assert preview["channels"] == ["email", "sms"]  # none asked for: every channel
        assert preview["email"]["subject"] == NOTICE["headline"]
        assert NOTICE["body"] in preview["email"]["text"]
        assert f"<h2>{NOTICE['headline']}</h2>" in preview["email"]["html"]
        sms = preview["sms"]
        assert sms["text"].startswith(f"{settings.partnership_name}: {NOTICE['headline']}.")
        [independent] = run_node_json(COUNT_BOTH, [sms["text"]])
        assert (sms["segments"], sms["encoding"]) == (
            independent["twilio"],
            independent["splitEncoding"],
        )
        assert sms["limit"] == settings.sms_segment_limit and sms["within_limit"]
        assert preview["reach"] == {"subscribers": 3, "email": 2, "sms": 1}
        templates = {t["template"]: t for t in preview["templates"]}
        assert templates["broadcast"]["needs"] == ["body", "headline"]
        assert "severity" in templates["security_advisory"]["needs"]
        assert "welcome" not in templates  # a transactional message is no broadcast

        email_only = await request(
            nc, PreviewBroadcast(channels=["email"], template="broadcast", data=NOTICE)
        )
        assert email_only["sms"] is None and email_only["reach"] is None

        # Typed in typographic quotes and a euro: the whole text goes as UCS-2, as counted.
        euro = await request(
            nc,
            PreviewBroadcast(
                channels=["sms"],
                data={"headline": "€5 off", "body": "“Quoted” — and a long one. " * 6},
            ),
        )
        [independent] = run_node_json(COUNT_BOTH, [euro["sms"]["text"]])
        assert euro["sms"]["encoding"] == independent["splitEncoding"] == "UCS-2"
        assert euro["sms"]["segments"] == independent["twilio"] > settings.sms_segment_limit
        assert not euro["sms"]["within_limit"]  # answered, not refused

        assert await refusal(nc, PreviewBroadcast(template="no_such")) == ("not_found", "template")
        assert await refusal(nc, PreviewBroadcast(template="welcome")) == ("not_found", "template")
        assert await refusal(nc, PreviewBroadcast(template="security_advisory", data=NOTICE)) == (
            "invalid",
            "data",
        )
        assert await refusal(nc, PreviewBroadcast(topic="no_such_topic", data=NOTICE)) == (
            "not_found",
            "topics",
        )
        assert await deliveries(notes) == []  # a preview plans nothing


@pytest.fixture
def store_services() -> tuple[str, ...]:
    """Only the notifications store goes on PostgreSQL in ``store_settings``."""
    return ("notifications",)


async def test_the_ledger_lists_failed_then_deferred_then_the_rest_a_page_at_a_time(
    store_settings: Settings, nc: Client, tmp_path: Path
) -> None:
    settings = store_settings
    now = datetime.now(domain.LONDON)
    quiet = f"{now - timedelta(hours=1):%H:%M}-{now + timedelta(hours=1):%H:%M}"
    async with scripted_smtp(tmp_path / "smtp", ["550 5.1.1 No such mailbox"]) as (port, _):
        service = create_service(quick(settings, smtp_port=port, quiet_hours=quiet))
        async with service.running() as notes:
            for n in range(1, 5):
                await add(nc, n, mobile=f"07400 10000{n}", sms_consent=n == 1, topics=["warp"])
            sent = await request(
                nc,
                SendBroadcast(
                    topic="warp", channels=["email", "sms"], template="broadcast", data=NOTICE
                ),
            )

            async def settled() -> bool:
                rows = await deliveries(notes)
                return sorted(r.status for r in rows) == [
                    "deferred",
                    "failed",
                    "sent",
                    "sent",
                    "sent",
                ]

            await eventually(settled, what="one failed, one deferred, three sent")
            await asyncio.sleep(0.3)

            first = await request(nc, ListDeliveries(limit=2))
            assert [d["status"] for d in first["deliveries"]] == ["failed", "deferred"]
            failed = first["deliveries"][0]
            assert "550" in failed["last_error"] and failed["channel"] == "email"
            assert failed["broadcast_id"] == sent["broadcast_id"]
            assert first["counts"] == {"failed": 1, "deferred": 1, "pending": 0, "sent": 3}
            second = await request(nc, ListDeliveries(limit=2, after=first["next"]))
            third = await request(nc, ListDeliveries(limit=2, after=second["next"]))
            assert [d["status"] for d in second["deliveries"] + third["deliveries"]] == ["sent"] * 3
            assert third["next"] is None
            every = first["deliveries"] + second["deliveries"] + third["deliveries"]
            assert len({d["delivery_id"] for d in every}) == 5
            sent_at = [d["created_at"] for d in every[2:]]
            assert sent_at == sorted(sent_at, reverse=True)  # newest first

            only_failed = await request(nc, ListDeliveries(status="failed"))
            assert [d["delivery_id"] for d in only_failed["deliveries"]] == [failed["delivery_id"]]
            other = await request(nc, ListDeliveries(broadcast_id="no-such-broadcast"))
            assert other["deliveries"] == [] and set(other["counts"].values()) == {0}
            assert await refusal(nc, ListDeliveries(after="not a cursor")) == ("invalid", "after")


async def test_contacts_are_found_by_address_name_or_organisation(
    settings: Settings, nc: Client
) -> None:
    async with create_service(quick(settings)).running():
        await add(nc, 1, name="Priya Shah", organisation="Wigan Council")
        await add(nc, 2, name="Sam Lee", organisation="Bolton Council")
        await add(nc, 3, email="jo_patel@example.org", name="Jo Patel")

        async def found(search: str, **more: object) -> list[str]:
            answer = await request(nc, ListContacts(search=search, **more))  # type: ignore[arg-type]
            return [contact["email"] for contact in answer["contacts"]]

        assert await found("WIGAN") == ["officer1@council1.example.gov.uk"]
        assert await found("sam") == ["officer2@council2.example.gov.uk"]
        assert await found("council2.example") == ["officer2@council2.example.gov.uk"]
        assert await found("o_p") == ["jo_patel@example.org"]  # "_" is itself, not any one
        assert await found("%") == []
        assert len(await found("council")) == 2
        page = await request(nc, ListContacts(search="council", limit=1))
        assert page["next"] == "officer1@council1.example.gov.uk"
