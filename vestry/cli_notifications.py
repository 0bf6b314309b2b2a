"""`vestry contacts …`, `vestry broadcast`, `vestry templates …`, `vestry sms ls`: the
alerts officer's commands. Contacts and broadcasts go to the notifications service
over NATS; templates and captured SMS are read from files, as the service reads them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vestry.connection import connected
from vestry.terminal import (
    Options,
    build,
    console,
    emit,
    fail,
    new_table,
    options_of,
    refuse,
    run,
    send,
)

if TYPE_CHECKING:
    from rich.table import Table

    from contracts import Message
    from services.notifications.templates import Templates

contacts_app = typer.Typer(no_args_is_help=True, help="Contacts, their consents and topics.")
templates_app = typer.Typer(no_args_is_help=True, help="Message templates: list and preview.")
sms_app = typer.Typer(no_args_is_help=True, help="SMS captured by the development stack.")

# The contract's topics (contracts.notifications_v1.TOPICS), written out so that the
# help is shown without loading the contracts; a unit test keeps the two the same.
TOPIC_NAMES = (
    "business_process_improvement",
    "project_and_programme_management",
    "customer_service",
    "information_sharing_and_security",
    "warp",
    "newsletter",
    "waste_and_recycling",
    "digital",
    "procurement",
)
TOPIC_HELP = "Topic: " + ", ".join(TOPIC_NAMES)


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _contact_table(contact: dict[str, Any]) -> Table:
    table = new_table(title=f"{contact['email']} ({contact['contact_id']})", show_header=False)
    for name, value in (
        ("name", contact["name"] or "-"),
        ("organisation", contact["organisation"] or "-"),
        ("mobile", contact["mobile"] or "-"),
        ("email consent", "yes" if contact["email_consent"] else "no"),
        ("SMS consent", "yes" if contact["sms_consent"] else "no"),
        ("topics", ", ".join(contact["topics"]) or "-"),
        ("source", contact["source"]),
        ("learnt from", ", ".join(contact.get("learnt_from", [])) or "-"),
    ):
        table.add_row(name, value)
    return table


# contacts …


@contacts_app.command("add")
def contacts_add(
    ctx: typer.Context,
    email: Annotated[str, typer.Option(help="The contact's email.")],
    name: Annotated[str | None, typer.Option(help="Their name.")] = None,
    organisation: Annotated[str | None, typer.Option("--org", help="Their organisation.")] = None,
    mobile: Annotated[
        str | None, typer.Option(help="Mobile; UK numbers may leave out +44.")
    ] = None,
    sms: Annotated[bool, typer.Option("--sms", help="They agree to SMS.")] = False,
    no_email: Annotated[
        bool, typer.Option("--no-email", help="They do not want broadcasts by email.")
    ] = False,
    topics: Annotated[str | None, typer.Option(help="Comma-separated topics to follow.")] = None,
) -> None:
    """Add a contact, or update the one with this email."""
    from contracts.notifications_v1 import AddContact

    options = options_of(ctx)
    command = build(
        options,
        lambda: AddContact(
            email=email,
            name=name,
            organisation=organisation,
            mobile=mobile,
            sms_consent=sms,
            email_consent=not no_email,
            topics=_split(topics),
        ),
    )
    contact = send(options, command)
    emit(options, contact, lambda: console.print(_contact_table(contact)))


@contacts_app.command("ls")
def contacts_ls(
    ctx: typer.Context,
    topic: Annotated[str | None, typer.Option(help="Only subscribers of this topic.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 1000,
) -> None:
    """List contacts by email, page after page."""
    from contracts.notifications_v1 import ListContacts
    from kernel.commands import request

    options = options_of(ctx)
    build(options, lambda: ListContacts(topic=topic))  # a bad topic is refused before any page

    async def every_page() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after: str | None = None
        async with connected(options.nats) as nc:
            while len(found) < limit:
                page = await request(
                    nc, ListContacts(topic=topic, after=after, limit=min(500, limit - len(found)))
                )
                found += page["contacts"]
                after = page["next"]
                if after is None:
                    break
        return found

    contacts = run(options, every_page())

    def render() -> None:
        table = new_table(title=f"Contacts ({len(contacts)})")
        for column in ("email", "name", "mobile", "email", "SMS", "topics"):
            table.add_column(column)
        for c in contacts:
            table.add_row(
                c["email"],
                c["name"] or "",
                c["mobile"] or "",
                "yes" if c["email_consent"] else "no",
                "yes" if c["sms_consent"] else "no",
                ", ".join(c["topics"]),
            )
        console.print(table)

    emit(options, contacts, render)


@contacts_app.command("show")
def contacts_show(
    ctx: typer.Context, contact: Annotated[str, typer.Argument(help="Email or contact id.")]
) -> None:
    """One contact: consents, topics and the latest deliveries to them."""
    from contracts.notifications_v1 import ShowContact

    options = options_of(ctx)
    found = send(options, build(options, lambda: ShowContact(contact=contact)))

    def render() -> None:
        console.print(_contact_table(found))
        table = new_table(title="Latest deliveries")
        for column in ("template", "channel", "status", "attempts", "when", "error"):
            table.add_column(column)
        for d in found["deliveries"]:
            table.add_row(
                d["template"],
                d["channel"],
                d["status"],
                str(d["attempts"]),
                d["created_at"][:19],
                (d["last_error"] or "")[:60],
            )
        console.print(table)

    emit(options, found, render)


@contacts_app.command("subscribe")
def contacts_subscribe(
    ctx: typer.Context,
    contact: Annotated[str, typer.Argument(help="Email or contact id.")],
    topics: Annotated[str | None, typer.Option(help="Comma-separated topics to follow.")] = None,
    channels: Annotated[
        str | None, typer.Option(help="Channels they now agree to: email, sms.")
    ] = None,
) -> None:
    """Subscribe a contact to topics and record their consent to channels."""
    from contracts.notifications_v1 import Subscribe

    options = options_of(ctx)
    command = build(
        options,
        lambda: Subscribe(contact=contact, topics=_split(topics), channels=_split(channels)),  # type: ignore[arg-type]
    )
    updated = send(options, command)
    emit(options, updated, lambda: console.print(_contact_table(updated)))


@contacts_app.command("unsubscribe")
def contacts_unsubscribe(
    ctx: typer.Context,
    contact: Annotated[str, typer.Argument(help="Email or contact id.")],
    topics: Annotated[str | None, typer.Option(help="Comma-separated topics to leave.")] = None,
    channels: Annotated[
        str | None, typer.Option(help="Channels they withdraw consent to: email, sms.")
    ] = None,
) -> None:
    """Take a contact off topics, or withdraw their consent to channels."""
    from contracts.notifications_v1 import Unsubscribe

    options = options_of(ctx)
    command = build(
        options,
        lambda: Unsubscribe(contact=contact, topics=_split(topics), channels=_split(channels)),  # type: ignore[arg-type]
    )
    updated = send(options, command)
    emit(options, updated, lambda: console.print(_contact_table(updated)))


@contacts_app.command("forget")
def contacts_forget(
    ctx: typer.Context,
    contact: Annotated[str, typer.Argument(help="Email or contact id.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a contact's personal data; the ledger keeps only what stops a resend."""
    from contracts.notifications_v1 import ForgetContact

    options = options_of(ctx)
    if not yes and not options.json:
        typer.confirm(f"Erase {contact} for good?", abort=True)
    done = send(options, build(options, lambda: ForgetContact(contact=contact)))
    emit(
        options,
        done,
        lambda: console.print(
            f"Forgotten. {done['ledger_rows_scrubbed']} ledger rows keep no address now."
        ),
    )


# broadcast


def broadcast(
    ctx: typer.Context,
    topic: Annotated[str, typer.Option(help=TOPIC_HELP)],
    template: Annotated[str, typer.Option(help="Template name (`vestry templates ls`).")],
    channels: Annotated[str, typer.Option(help="email, sms or email,sms.")] = "email",
    data: Annotated[
        Path | None, typer.Option(help="JSON file with the template's values.", exists=True)
    ] = None,
    urgent: Annotated[
        bool, typer.Option("--urgent", help="SMS go out in quiet hours too.")
    ] = False,
    wait: Annotated[float, typer.Option(help="Seconds to follow the sending; 0 not to.")] = 600,
) -> None:
    """Send a message to every subscriber of a topic who agreed to each channel, once."""
    from contracts.notifications_v1 import SendBroadcast
    from contracts.system_v1 import CommandError

    options = options_of(ctx)
    values: dict[str, Any] = {}
    if data is not None:
        try:
            values = json.loads(data.read_text())
        except json.JSONDecodeError as bad:
            refuse(
                CommandError(code="invalid", message=f"{data} is not JSON: {bad}", field="data"),
                options,
            )
        if not isinstance(values, dict):
            refuse(
                CommandError(
                    code="invalid", message=f"{data} must hold a JSON object", field="data"
                ),
                options,
            )
    command = build(
        options,
        lambda: SendBroadcast(
            topic=topic,
            channels=_split(channels),
            template=template,
            data=values,
            urgent=urgent,  # type: ignore[arg-type]
        ),
    )
    result = run(options, _broadcast(options, command, wait))
    emit(options, result, lambda: _render_broadcast(result))


async def _broadcast(options: Options, command: Message, wait: float) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from contracts.notifications_v1 import BroadcastStatus
    from kernel.commands import request

    async with connected(options.nats) as nc:
        answer = await request(nc, command, timeout=120)
        if wait <= 0 or answer["planned"] == 0:
            return answer
        total = answer["planned"]
        status = answer
        with Progress(
            TextColumn("[bold]Broadcast[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=options.json,
        ) as progress:
            task = progress.add_task(f"to {command.topic}", total=total)  # type: ignore[attr-defined]
            deadline = asyncio.get_running_loop().time() + wait
            while asyncio.get_running_loop().time() < deadline:
                status = await request(nc, BroadcastStatus(broadcast_id=answer["broadcast_id"]))
                progress.update(task, completed=status["sent"] + status["failed"])
                if status["completed"] or status["pending"] == 0:
                    break  # done, or only deferred rows left (quiet hours)
                await asyncio.sleep(0.25)
        return status


def _render_broadcast(result: dict[str, Any]) -> None:
    line = (
        f"Broadcast {result['broadcast_id']} to {result['topic']}: {result['recipients']} "
        f"subscribers, {result['planned']} deliveries planned, "
        f"{result['skipped_for_consent']} skipped for lack of consent"
    )
    if "sent" in result:
        line += f"; {result['sent']} sent, {result['failed']} failed"
        if result.get("deferred"):
            line += f", {result['deferred']} waiting for the end of quiet hours"
    console.print(line)


# templates …


def _templates(options: Options) -> Templates:
    from services.notifications.templates import Templates

    settings = options.settings
    return Templates(settings.templates_dir, partnership=settings.partnership_name)


@templates_app.command("ls")
def templates_ls(ctx: typer.Context) -> None:
    """Every message type, its channels, and where its sample comes from."""
    from services.notifications.catalogue import MESSAGE_TYPES

    options = options_of(ctx)
    found = _templates(options).names()
    rows = [
        {
            "template": name,
            "channels": channels,
            "description": MESSAGE_TYPES[name].description
            if name in MESSAGE_TYPES
            else "operator's own",
            "broadcast": MESSAGE_TYPES[name].broadcast if name in MESSAGE_TYPES else True,
        }
        for name, channels in found.items()
    ]

    def render() -> None:
        table = new_table(title=f"Templates ({len(rows)})")
        for column in ("template", "channels", "what"):
            table.add_column(column)
        for row in rows:
            table.add_row(row["template"], ", ".join(row["channels"]), row["description"])
        console.print(table)

    emit(options, rows, render)


@templates_app.command("preview")
def templates_preview(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Template name (`vestry templates ls`).")],
    channel: Annotated[str, typer.Option(help="email or sms.")] = "email",
    data: Annotated[
        Path | None, typer.Option(help="JSON values instead of the sample.", exists=True)
    ] = None,
) -> None:
    """Render a template with its sample data (or yours), as the recipient would see it."""
    from contracts.system_v1 import CommandError
    from services.notifications.catalogue import MESSAGE_TYPES
    from services.notifications.segments import count_segments
    from services.notifications.templates import TemplateProblem

    options = options_of(ctx)
    _unknown_channel(options, channel)
    templates = _templates(options)
    sample = dict(MESSAGE_TYPES[name].sample) if name in MESSAGE_TYPES else {}
    if data is not None:
        sample.update(json.loads(data.read_text()))
    try:
        templates.check(name, [channel])
        if channel == "sms":
            text = templates.sms(name, sample)
            counted = count_segments(text)
            limit = options.settings.sms_segment_limit
            result: dict[str, Any] = {
                "template": name,
                "channel": "sms",
                "text": text,
                "encoding": counted.encoding,
                "units": counted.units,
                "segments": counted.segments,
                "within_limit": counted.segments <= limit,
            }
            emit(
                options,
                result,
                lambda: console.print(
                    f"{text}\n\n[dim]{counted.units} {counted.encoding} units, "
                    f"{counted.segments} segment(s); limit {limit}[/]",
                    highlight=False,
                ),
            )
            return
        rendered = templates.email(name, sample)
    except TemplateProblem as problem:
        refuse(CommandError(code=problem.code, message=str(problem), field=problem.field), options)
    result = {
        "template": name,
        "channel": "email",
        "subject": rendered.subject,
        "text": rendered.text,
        "html": rendered.html,
    }
    emit(
        options,
        result,
        lambda: console.print(
            f"[bold]Subject:[/] {rendered.subject}\n\n{rendered.text}", highlight=False
        ),
    )


# sms ls


@sms_app.command("ls")
def sms_ls(ctx: typer.Context) -> None:
    """List the SMS the development stack captured."""
    from services.notifications.sms import read_captured

    options = options_of(ctx)
    captured = read_captured(options.settings.data_dir / "sms")
    rows = [
        {
            "n": n,
            "to": s.to,
            "segments": s.segments,
            "encoding": s.encoding,
            "text": s.text,
            "at": s.at,
        }
        for n, s in enumerate(captured, 1)
    ]

    def render() -> None:
        table = new_table(title=f"Captured SMS ({len(rows)})")
        for column in ("#", "to", "parts", "text"):
            table.add_column(column)
        for row in rows:
            table.add_row(str(row["n"]), row["to"], str(row["segments"]), row["text"])
        console.print(table)

    emit(options, rows, render)


def _unknown_channel(options: Options, channel: str) -> None:
    if channel not in ("email", "sms"):
        fail(f"--channel is email or sms, not {channel!r}", options=options)


# resend


def resend(
    ctx: typer.Context,
    delivery_id: Annotated[
        str, typer.Argument(help="A failed delivery's id (`vestry contacts show`).")
    ],
) -> None:
    """Try a failed delivery again, with its retries afresh."""
    from contracts.notifications_v1 import ResendDelivery

    options = options_of(ctx)
    queued = send(options, build(options, lambda: ResendDelivery(delivery_id=delivery_id)))
    emit(
        options,
        queued,
        lambda: console.print(
            f"{queued['template']} by {queued['channel']} to {queued['recipient']} is queued "
            f"again (it failed after {queued['attempts']} attempts: {queued['last_error']})."
        ),
    )
