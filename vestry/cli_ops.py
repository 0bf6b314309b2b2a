"""The operator's night: `vestry streams`, `tail`, `replay`, `rebuild` and `dlq`."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

import typer

from vestry.connection import connected
from vestry.terminal import Options, console, emit, fail, new_table, options_of, refuse, run

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

    from contracts.system_v1 import RebuildReport, RedriveReport, ReplayReport, ReplayRequest
    from kernel.deadletter import DeadLetter

LONDON = ZoneInfo("Europe/London")
dlq_app = typer.Typer(no_args_is_help=True, help="Dead letters: list, show, redrive, purge.")


def parse_time(text: str | None, option: str) -> datetime | None:
    """An ISO 8601 time; without a zone it is read as Europe/London, as people give it."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a time like 2026-11-23T02:00", param_hint=option
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=LONDON)


# Streams


def streams(ctx: typer.Context) -> None:
    """Every stream (subjects, messages, bytes, sequences and times) and every consumer."""
    options = options_of(ctx)

    async def gather() -> list[dict[str, Any]]:
        async with connected(options.nats) as nc:
            return await _streams(nc)

    rows = run(options, gather())

    def render() -> None:
        table = new_table(title="Streams")
        for column in ("stream", "subjects", "messages", "bytes", "first", "last"):
            table.add_column(column)
        for row in rows:
            table.add_row(
                row["name"],
                "\n".join(row["subjects"]),
                str(row["messages"]),
                str(row["bytes"]),
                f"#{row['first_seq']} {row['first_ts'] or ''}",
                f"#{row['last_seq']} {row['last_ts'] or ''}",
            )
        console.print(table)
        consumers = new_table(title="Consumers")
        for column in ("stream", "consumer", "pending", "waiting for ack", "redelivered"):
            consumers.add_column(column)
        for row in rows:
            for consumer in row["consumers"]:
                consumers.add_row(
                    row["name"],
                    consumer["name"],
                    str(consumer["pending"]),
                    str(consumer["ack_pending"]),
                    str(consumer["redelivered"]),
                )
        console.print(consumers)

    emit(options, rows, render)


async def _streams(nc: Client) -> list[dict[str, Any]]:
    from kernel.personal import KEYS_STREAM
    from vestry import status as status_report

    js = nc.jetstream()
    rows = []
    for state in await status_report.stream_states(nc):
        # A message of PERSON_KEYS is somebody's key: nobody reads one to show a time.
        dated = state.messages and state.name != KEYS_STREAM
        rows.append(
            {
                **state.model_dump(mode="json"),
                "first_ts": await _stored_at(js, state.name, state.first_seq) if dated else None,
                "last_ts": await _stored_at(js, state.name, state.last_seq) if dated else None,
            }
        )
    return rows


async def _stored_at(js: JetStreamContext, stream: str, sequence: int) -> str | None:
    from nats.js.errors import NotFoundError

    try:
        return _london((await js.get_msg(stream, seq=sequence)).time)
    except NotFoundError:  # deleted since
        return None


def _london(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(LONDON).strftime("%Y-%m-%d %H:%M:%S")


# Tail


def tail(
    ctx: typer.Context,
    subject: Annotated[str, typer.Argument(help="Subject or wildcard, e.g. 'subscriptions.>'.")],
    since: Annotated[
        str | None, typer.Option(help="From this time (Europe/London unless a zone is given).")
    ] = None,
    from_seq: Annotated[int | None, typer.Option(help="From this stream sequence.")] = None,
    follow: Annotated[bool, typer.Option(help="Keep waiting for new messages.")] = True,
    limit: Annotated[int | None, typer.Option(help="Stop after this many messages.")] = None,
) -> None:
    """Show messages on SUBJECT decoded through the contracts; odd ones raw and flagged."""
    import nats.errors
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    options = options_of(ctx)
    start = parse_time(since, "--since")

    async def watch() -> int:
        async with connected(options.nats) as nc:
            js = nc.jetstream()
            try:
                stream = await js.find_stream_name_by_subject(subject)
            except Exception:
                fail(f"no stream holds {subject}", options=options)
            name = f"tail-{uuid.uuid4().hex[:10]}"
            config = ConsumerConfig(
                name=name,
                ack_policy=AckPolicy.NONE,
                filter_subject=subject,
                mem_storage=True,
                inactive_threshold=30.0,
                deliver_policy=DeliverPolicy.NEW if follow else DeliverPolicy.ALL,
            )
            if from_seq is not None:
                config.deliver_policy, config.opt_start_seq = (
                    DeliverPolicy.BY_START_SEQUENCE,
                    from_seq,
                )
            elif start is not None:
                config.deliver_policy = DeliverPolicy.BY_START_TIME
                config.opt_start_time = start.astimezone(UTC).isoformat().replace("+00:00", "Z")
            await js.add_consumer(stream, config)
            subscription = await js.pull_subscribe_bind(name=name, stream=stream)
            shown = 0
            try:
                while limit is None or shown < limit:
                    try:
                        msgs = await subscription.fetch(min(100, (limit or 100) - shown), timeout=1)
                    except nats.errors.TimeoutError:
                        if not follow:
                            break
                        continue
                    for msg in msgs:
                        _show(options, describe(msg))
                        shown += 1
                    if not follow and msgs and msgs[-1].metadata.num_pending == 0:
                        break
            finally:
                await js.delete_consumer(stream, name)
            return shown

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends a followed tail
        run(options, watch())


def describe(msg: Msg) -> dict[str, Any]:
    """A message as the tail shows it: decoded if it is a valid contract, raw and flagged if not."""
    from pydantic import ValidationError

    from contracts import REGISTRY, Envelope, UnknownMessage
    from kernel.personal import stand_ins

    meta = msg.metadata
    row: dict[str, Any] = {
        "seq": meta.sequence.stream,
        "subject": msg.subject,
        "time": _london(meta.timestamp),
    }
    try:
        envelope = Envelope.from_bytes(msg.data)
        model = REGISTRY.spec(envelope.type, envelope.version).model
        # Personal fields travel sealed; the tail has no keys and checks the rest.
        model.model_validate(stand_ins(model, envelope.data))
    except (ValidationError, UnknownMessage) as problem:
        reason = "unknown type" if isinstance(problem, UnknownMessage) else "does not validate"
        return {**row, "flag": reason, "raw": msg.data.decode(errors="replace")[:500]}
    keys = {
        k: v
        for k, v in envelope.data.items()
        if k.endswith("_id") or k in ("reference", "number", "name")
    }
    return {**row, "type": f"{envelope.type} v{envelope.version}", "id": envelope.id, "keys": keys}


def _show(options: Options, row: dict[str, Any]) -> None:
    if options.json:
        print(json.dumps(row, default=str), flush=True)
    elif "flag" in row:
        console.print(
            f"[dim]#{row['seq']} {row['time']}[/] [bold red]{row['flag']}[/] {row['subject']}: "
            f"{row['raw']}",
            highlight=False,
        )
    else:
        keys = " ".join(f"{k}={v}" for k, v in row["keys"].items())
        console.print(
            f"[dim]#{row['seq']} {row['time']}[/] [bold]{row['type']}[/] {row['id']} {keys}",
            highlight=False,
        )


# Replay


def replay(
    ctx: typer.Context,
    stream: Annotated[str, typer.Option(help="Stream to replay, e.g. EVENTS.")],
    into: Annotated[str, typer.Option(help="Service to replay into.")],
    subject: Annotated[str | None, typer.Option(help="Subject filter (wildcards allowed).")] = None,
    from_seq: Annotated[int | None, typer.Option(help="First stream sequence.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Earliest time (Europe/London unless a zone is given).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Latest time.")] = None,
    to_seq: Annotated[int | None, typer.Option(help="Last stream sequence.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Count what would be replayed, by type.")] = False,
) -> None:
    """Replay part of a stream into a service; what it handled before changes nothing."""
    from pydantic import ValidationError

    from contracts.system_v1 import SERVICES, ReplayRequest
    from kernel.commands import validation_error

    options = options_of(ctx)
    if into not in SERVICES:
        fail(f"no service called {into!r}; the services are {', '.join(SERVICES)}", options=options)
    try:
        request = ReplayRequest(
            stream=stream.upper(),
            subject=subject,
            from_seq=from_seq,
            since=parse_time(since, "--since"),
            to_seq=to_seq,
            until=parse_time(until, "--until"),
            dry_run=dry_run,
        )
    except ValidationError as invalid:
        refuse(validation_error(invalid), options)
    report = run(options, _replay(options, into, request))
    emit(options, report.model_dump(mode="json"), lambda: _render_replay(report))


async def _replay(options: Options, into: str, request: ReplayRequest) -> ReplayReport:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from contracts.system_v1 import ReplayReport, replay_subject
    from kernel.commands import CommandFailed, ServiceUnavailable, request_raw
    from vestry import status as status_report

    async with connected(options.nats) as nc:
        if not (await status_report.service_state(nc, into)).up:
            raise ServiceUnavailable(f"{into} is not running: nothing was replayed")
        progress_subject = f"_VESTRY.progress.{uuid.uuid4().hex}"
        request = request.model_copy(update={"progress_subject": progress_subject})
        with Progress(
            TextColumn("Replaying {task.fields[stream]} into {task.fields[into]}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            disable=options.json or request.dry_run,
        ) as bar:
            task = bar.add_task("replay", total=None, stream=request.stream, into=into)

            async def on_progress(msg: Msg) -> None:
                update = json.loads(msg.data)
                bar.update(task, completed=update["done"], total=update["total"])

            subscription = await nc.subscribe(progress_subject, cb=on_progress)
            try:
                reply = await request_raw(
                    nc,
                    replay_subject(into),
                    request.model_dump_json().encode(),
                    timeout=3600,
                    headers=_request_id(),
                )
            finally:
                await subscription.unsubscribe()
        if not reply.ok:
            assert reply.error is not None
            raise CommandFailed(reply.error)
        # The service records the replay in OPS itself, dry run or not.
        return ReplayReport.model_validate(reply.data)


def _request_id() -> dict[str, str]:
    """The header naming an operator's request, which the service's OPS record carries."""
    from kernel.audit import REQUEST_ID_HEADER

    return {REQUEST_ID_HEADER: str(uuid.uuid4())}


def _render_replay(report: ReplayReport) -> None:
    if not report.subjects:
        console.print(
            f"[yellow]{report.service} handles nothing on that filter in {report.stream}: "
            "nothing replayed.[/]"
        )
        return
    if not report.matched:
        console.print(f"[yellow]No message in {report.stream} matches: nothing replayed.[/]")
        return
    table = new_table(
        title=f"{'Dry run: ' if report.dry_run else ''}{report.stream} → {report.service}"
    )
    table.add_column("type")
    table.add_column("messages", justify="right")
    for type_, count in report.by_type.items():
        table.add_row(type_, str(count))
    console.print(table)
    span = f"sequences {report.first_seq}–{report.last_seq}"
    if report.dry_run:
        console.print(f"{report.matched} messages ({span}) would be replayed.")
    else:
        console.print(
            f"{report.matched} messages ({span}): [green]{report.applied} applied[/], "
            f"{report.skipped} skipped as already handled, "
            f"[{'red' if report.failed else 'green'}]{report.failed} failed[/] (see `vestry dlq ls`)."
        )


# Rebuild


def rebuild(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="The service whose read models to rebuild.")],
) -> None:
    """Drop a service's read models of other services' facts and rebuild them from the streams."""
    from contracts.system_v1 import SERVICES

    options = options_of(ctx)
    if service not in SERVICES:
        fail(
            f"no service called {service!r}; the services are {', '.join(SERVICES)}",
            options=options,
        )
    report = run(options, _rebuild(options, service))

    def render() -> None:
        table = new_table(title=f"Rebuilt {service}")
        for column in ("table", "rows before", "rows after"):
            table.add_column(column)
        for name, before in report.rows_before.items():
            table.add_row(name, str(before), str(report.rows_after.get(name, 0)))
        console.print(table)
        for replayed in report.replayed:
            console.print(
                f"{replayed.stream}: {replayed.matched} facts replayed, {replayed.applied} applied, "
                f"[{'red' if replayed.failed else 'green'}]{replayed.failed} failed[/]"
            )

    emit(options, report.model_dump(mode="json"), render)


async def _rebuild(options: Options, service: str) -> RebuildReport:
    from contracts.system_v1 import RebuildReport, rebuild_subject
    from kernel.commands import CommandFailed, ServiceUnavailable, request_raw
    from vestry import status as status_report

    async with connected(options.nats) as nc:
        if not (await status_report.service_state(nc, service)).up:
            raise ServiceUnavailable(f"{service} is not running: nothing was rebuilt")
        with (
            console.status(f"Rebuilding {service}'s read models…", spinner="dots")
            if not options.json
            else contextlib.nullcontext()
        ):
            reply = await request_raw(
                nc, rebuild_subject(service), b"{}", timeout=3600, headers=_request_id()
            )
        if not reply.ok:
            assert reply.error is not None
            raise CommandFailed(reply.error)
        return RebuildReport.model_validate(reply.data)  # recorded in OPS by the service


# Dead letters


@dlq_app.command("ls")
def dlq_ls(ctx: typer.Context) -> None:
    """The dead letters, oldest first."""
    options = options_of(ctx)
    letters = run(options, _dead_letters(options))
    rows = [_letter_row(letter) for letter in letters]

    def render() -> None:
        table = new_table(title=f"Dead letters ({len(rows)})")
        for column in ("id", "failed at", "service", "from", "kind", "tries", "error"):
            table.add_column(column)
        for row in rows:
            table.add_row(
                str(row["id"]),
                row["failed_at"],
                row["service"],
                f"{row['stream']} #{row['sequence']} {row['subject']}",
                row["kind"],
                str(row["deliveries"]),
                row["error"][:80],
            )
        console.print(table)

    emit(options, rows, render)


@dlq_app.command("show")
def dlq_show(ctx: typer.Context, letter_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """One dead letter: where it came from, why it failed, and the message itself."""
    options = options_of(ctx)
    letters = {letter.sequence: letter for letter in run(options, _dead_letters(options))}
    if letter_id not in letters:
        fail(f"there is no dead letter {letter_id}; `vestry dlq ls` lists them", options=options)
    row = {
        **_letter_row(letters[letter_id]),
        "message": letters[letter_id].data.decode(errors="replace"),
    }
    emit(options, row, lambda: console.print_json(json.dumps(row, default=str)))


@dlq_app.command("redrive")
def dlq_redrive(
    ctx: typer.Context,
    ids: Annotated[list[int] | None, typer.Argument(metavar="ID...")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead letter.")] = False,
) -> None:
    """Send dead letters back to the service they failed in."""
    options = options_of(ctx)
    if bool(ids) == all_:
        fail("name the dead letters to redrive, or give --all", options=options)
    reports = run(options, _redrive(options, ids or [], all_))
    rows = [report.model_dump(mode="json") for report in reports]

    def render() -> None:
        if not rows:
            console.print("No dead letters to redrive.")
        for report in reports:
            console.print(
                f"{report.service}: [green]{report.applied} applied[/], {report.skipped} already "
                f"handled, [{'red' if report.failed else 'green'}]{report.failed} failed again[/]"
                + (f", not found: {report.not_found}" if report.not_found else "")
            )

    emit(options, rows, render)


async def _redrive(options: Options, ids: list[int], all_: bool) -> list[RedriveReport]:
    from contracts.system_v1 import RedriveReport, RedriveRequest, redrive_subject
    from kernel.commands import CommandFailed, ServiceUnavailable, request_raw
    from kernel.deadletter import read_dead_letters
    from vestry import status as status_report

    async with connected(options.nats) as nc:
        letters = await read_dead_letters(nc.jetstream(), limit=100_000)
        wanted = letters if all_ else [letter for letter in letters if letter.sequence in ids]
        missing = sorted(set(ids) - {letter.sequence for letter in letters})
        if missing:
            fail(
                f"no dead letter {', '.join(map(str, missing))}; `vestry dlq ls` lists them",
                options=options,
            )
        by_service: dict[str, list[int]] = {}
        for letter in wanted:
            by_service.setdefault(letter.headers.get("Vestry-Service", ""), []).append(
                letter.sequence
            )
        reports = []
        for service, sequences in sorted(by_service.items()):
            if not (await status_report.service_state(nc, service)).up:
                raise ServiceUnavailable(
                    f"{service} is not running: its dead letters stay where they are"
                )
            request = RedriveRequest(sequences=sequences)
            reply = await request_raw(
                nc,
                redrive_subject(service),
                request.model_dump_json().encode(),
                timeout=600,
                headers=_request_id(),
            )
            if not reply.ok:
                assert reply.error is not None
                raise CommandFailed(reply.error)
            reports.append(RedriveReport.model_validate(reply.data))  # each service records it
        return reports


@dlq_app.command("purge")
def dlq_purge(
    ctx: typer.Context,
    older_than: Annotated[
        float, typer.Option(help="Remove dead letters older than this many days.")
    ],
    yes: Annotated[bool, typer.Option("--yes", help="Really remove them.")] = False,
) -> None:
    """Remove old dead letters: the only way anything leaves the DLQ without being applied."""
    from kernel.deadletter import read_dead_letters
    from kernel.streams import DLQ_STREAM
    from vestry import ops

    options = options_of(ctx)
    if not yes:
        fail("purging removes dead letters for good: add --yes to do it", options=options)

    async def purge() -> int:
        async with connected(options.nats) as nc:
            js = nc.jetstream()
            cutoff = datetime.now(UTC) - timedelta(days=older_than)
            old = [
                letter
                for letter in await read_dead_letters(js, limit=100_000)
                if datetime.fromisoformat(
                    letter.headers.get("Vestry-Failed-At", cutoff.isoformat())
                )
                < cutoff
            ]
            for letter in old:
                await js.delete_msg(DLQ_STREAM, letter.sequence)
            await ops.record(
                js,
                "purge",
                url=options.nats,
                target=DLQ_STREAM,
                filters={"older_than_days": older_than},
                result={"removed": [letter.sequence for letter in old]},
            )
            return len(old)

    removed = run(options, purge())
    emit(options, {"removed": removed}, lambda: console.print(f"Removed {removed} dead letters."))


async def _dead_letters(options: Options) -> list[DeadLetter]:
    from kernel.deadletter import read_dead_letters

    async with connected(options.nats) as nc:
        return await read_dead_letters(nc.jetstream(), limit=100_000)


def _letter_row(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.sequence,
        "failed_at": _london(letter.headers.get("Vestry-Failed-At")) or "",
        "service": letter.headers.get("Vestry-Service", ""),
        "consumer": letter.consumer,
        "stream": letter.original_stream,
        "sequence": letter.original_sequence,
        "subject": letter.original_subject,
        "kind": letter.kind,
        "deliveries": letter.deliveries,
        "error": letter.error,
    }
