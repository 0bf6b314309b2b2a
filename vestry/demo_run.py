"""`vestry demo` end to end: the three jobs against the running stack, and its report."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from contracts.system_v1 import ReplayReport, ReplayRequest, replay_subject
from kernel.commands import request_raw
from services.notifications.sms import read_captured
from vestry import status as status_report
from vestry.demo import enrol_reference_partnership, wait_for
from vestry.demo_events import run_events_demo
from vestry.demo_invoicing import run_invoicing_demo
from vestry.demo_notifications import run_notifications_demo
from vestry.mailcapture import read_mailbox


async def run_demo(nc: Client, data_dir: Path, progress: Progress | None = None) -> dict[str, Any]:
    """The three jobs end to end: members enrolled and invoiced, a programme of events
    booked with a waiting list promoted, and a replay that sends nothing new."""
    mail_dir, sms_dir = data_dir / "mail", data_dir / "sms"
    mails_before, sms_before = _mail_count(mail_dir), _sms_count(sms_dir)
    outcome = await enrol_reference_partnership(nc, progress)

    async def welcomed() -> bool:
        return _mail_count(mail_dir) - mails_before >= outcome.joined

    await wait_for(welcomed, timeout=60)
    invoicing = await run_invoicing_demo(nc, progress)
    events = await run_events_demo(nc, progress)
    broadcast = await run_notifications_demo(nc, progress)
    await _settled(nc)
    mails_before_replay, sms_before_replay = _mail_count(mail_dir), _sms_count(sms_dir)
    replay = await _replay_into_notifications(nc)
    await asyncio.sleep(1)  # a wrongly planned delivery would be on its way by now
    current = await status_report.gather(nc)
    return {
        "members": {
            "joined": outcome.joined,
            "already": outcome.already,
            "refused": outcome.refused,
        },
        "invoicing": invoicing,
        "events": events,
        "broadcast": broadcast,
        "replay": {
            **replay,
            "new_mail": _mail_count(mail_dir) - mails_before_replay,
            "new_sms": _sms_count(sms_dir) - sms_before_replay,
        },
        "mail_captured": _mail_count(mail_dir) - mails_before,
        "mailbox": str(mail_dir),
        "sms_captured": _sms_count(sms_dir) - sms_before,
        "streams": {stream.name: stream.messages for stream in current.streams},
        "dead_letters": next((s.messages for s in current.streams if s.name == "DLQ"), 0),
    }


async def _settled(nc: Client, timeout: float = 30) -> None:
    """Wait until every consumer, relay and sender has caught up, so that the replay
    meets handled facts only and any mail during it would be the replay's doing."""

    async def caught_up() -> bool:
        states = await status_report.stream_states(nc)
        if not all(c.pending == 0 and c.ack_pending == 0 for s in states for c in s.consumers):
            return False
        services = (await status_report.gather(nc)).services
        return all(
            s.report is not None and s.report.outbox_unsent == 0 and s.report.backlog == 0
            for s in services
        )

    await wait_for(caught_up, timeout)


async def _replay_into_notifications(nc: Client) -> dict[str, Any]:
    """Replay the whole EVENTS stream, then SUBSCRIPTIONS, into notifications."""
    totals: dict[str, Any] = {
        "streams": [],
        "into": "notifications",
        "matched": 0,
        "applied": 0,
        "skipped": 0,
        "failed": 0,
    }
    for stream in ("EVENTS", "SUBSCRIPTIONS"):
        request = ReplayRequest(stream=stream)
        reply = await request_raw(
            nc, replay_subject("notifications"), request.model_dump_json().encode(), timeout=600
        )
        if not reply.ok or reply.data is None:
            return {**totals, "error": reply.error.message if reply.error else "no answer"}
        report = ReplayReport.model_validate(reply.data)  # recorded in OPS by the service
        totals["streams"].append(stream)
        for key in ("matched", "applied", "skipped", "failed"):
            totals[key] += getattr(report, key)
    return totals


def _sms_count(sms_dir: Path) -> int:
    return len(read_captured(sms_dir)) if sms_dir.exists() else 0


def _mail_count(mail_dir: Path) -> int:
    return len(read_mailbox(mail_dir)) if mail_dir.exists() else 0


def render(summary: dict[str, Any], console: Console) -> None:
    """The demo's report: what happened and where to look."""
    table = Table(title="Demo: the reference partnership", show_header=False)
    members = summary["members"]
    table.add_row(
        "members",
        f"{members['joined']} joined, {members['already']} already members, "
        f"{len(members['refused'] or [])} refused",
    )
    invoicing = summary["invoicing"]
    table.add_row(
        f"invoicing {invoicing['year']}",
        f"{invoicing['issued']} issued, {invoicing['already_billed']} already billed; "
        f"{invoicing['invoices_for_year']} invoices for the year, "
        f"£{invoicing['total_billed_pence'] / 100:,.2f} billed, numbers {invoicing['numbers']}",
    )
    events = summary["events"]
    rush = events["rush"]
    table.add_row(
        "events",
        f"{events['events_published']} published across "
        f"{len(events['events_by_programme'])} programmes",
    )
    table.add_row(
        "booking rush",
        f"{events['rush_event']}: {rush['requests']} requests, "
        f"{rush['confirmed']} confirmed, {rush['waitlisted']} waitlisted",
    )
    cancellation = events["cancellation"]
    table.add_row(
        "cancellation",
        f"{cancellation['cancelled']} cancelled; promoted "
        f"{', '.join(cancellation['promoted']) or 'nobody'}",
    )
    broadcast = summary["broadcast"]
    table.add_row(
        "security advisory",
        f"{broadcast['advisory']} to the {broadcast['topic']} topic: "
        f"{broadcast['sent']} sent, {broadcast['failed']} failed, "
        f"{broadcast['skipped_for_consent']} skipped for lack of consent",
    )
    replay = summary["replay"]
    table.add_row(
        "replay",
        f"{' and '.join(replay['streams'])} into {replay['into']}: {replay.get('matched')} "
        f"messages, {replay.get('applied')} applied, {replay.get('skipped')} skipped "
        f"as handled, {replay.get('new_mail')} new mail, {replay.get('new_sms')} new SMS",
    )
    table.add_row("mail captured", f"{summary['mail_captured']} in {summary['mailbox']}")
    table.add_row("SMS captured", f"{summary['sms_captured']} (`vestry sms ls`)")
    table.add_row(
        "streams", ", ".join(f"{name} {count}" for name, count in summary["streams"].items())
    )
    table.add_row("dead letters", str(summary["dead_letters"]))
    console.print(table)
    console.print(
        "Look closer: `vestry mail ls`, `vestry invoices ls`, `vestry events ls`, "
        "`vestry streams`, `vestry tail 'events.>' --no-follow`, `vestry dlq ls`."
    )
