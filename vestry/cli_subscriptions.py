"""`vestry members|invoice-run|invoices|payments`: the finance officer's commands.

Every command asks the subscriptions service over NATS (request/reply); none
opens its store. An invoicing run is answered at once with the run's record;
the command then follows the run with ``InvoiceRunStatus`` and a progress bar
until it ends, so a run of any size never waits on one request's timeout.
"""

from __future__ import annotations

import asyncio
import base64
import csv
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vestry import terminal
from vestry.connection import connected
from vestry.terminal import Options, console, emit, fail, new_table, options_of, refuse, run, send

if TYPE_CHECKING:
    from contracts.subscriptions_v1 import JoinMember, RunInvoicing

members_app = typer.Typer(no_args_is_help=True, help="Member organisations.")
invoices_app = typer.Typer(no_args_is_help=True, help="Invoices and credit notes.")
payments_app = typer.Typer(no_args_is_help=True, help="Payments received.")

CSV_COLUMNS = ("name", "tier", "billing_email", "joined_on", "reference", "phone")


def pounds(pence: int) -> str:
    return f"£{pence / 100:,.2f}"


def parse_amount(text: str) -> int:
    """'1,000.50' or '£20' → pence; raises ValueError."""
    raw = text.replace(",", "").replace("£", "").strip()
    whole, _, fraction = raw.partition(".")
    if not whole.isdigit() or (fraction and (not fraction.isdigit() or len(fraction) > 2)):
        raise ValueError(f"{text!r} is not an amount in pounds and pence, like 1,000.50")
    return int(whole) * 100 + (int(fraction.ljust(2, "0")) if fraction else 0)


def build(options: Options, model: type[Any], **fields: Any) -> Any:
    """The command, or a structured refusal before anything is sent."""
    return terminal.build(options, lambda: model(**fields))


def write_document(document: dict[str, Any], path: Path) -> None:
    """Write a document answered as base64 (ShowDocument, ShowStatement) to ``path``."""
    path.write_bytes(base64.b64decode(document["content_base64"]))


# Printing a PDF takes the service a moment, more the first time.
DOCUMENT_TIMEOUT_S = 30


# Members


@members_app.command("add")
def members_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="The organisation's name.")],
    tier: Annotated[str, typer.Option(help="Tier code: upper-tier, district or public-service.")],
    email: Annotated[str, typer.Option(help="Billing contact's email.")],
    joined: Annotated[
        str | None, typer.Option(help="First day, YYYY-MM-DD (default today).")
    ] = None,
    reference: Annotated[str | None, typer.Option(help="The member's own reference.")] = None,
    phone: Annotated[str | None, typer.Option(help="Billing contact's phone.")] = None,
) -> None:
    """Enrol a member organisation."""
    from contracts.subscriptions_v1 import JoinMember

    options = options_of(ctx)
    command = build(
        options,
        JoinMember,
        name=name,
        tier=tier,
        billing_email=email,
        joined_on=joined or date.today().isoformat(),
        reference=reference,
        phone=phone,
    )
    reply = send(options, command, timeout=10)
    emit(
        options,
        {"ok": True, **reply},
        lambda: console.print(
            f"[green]{command.name}[/] joined at the {command.tier} tier (member {reply['member_id']})."
        ),
    )


def read_members_csv(path: Path) -> tuple[list[JoinMember], list[int], list[str]]:
    """Rows of a members CSV as commands, their line numbers, and every bad row's reason."""
    from pydantic import ValidationError

    from contracts.subscriptions_v1 import JoinMember
    from kernel.commands import validation_error

    members: list[JoinMember] = []
    lines: list[int] = []
    problems: list[str] = []
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as error:
        return [], [], [f"cannot read {path}: {error.strerror}"]
    with handle:
        reader = csv.DictReader(handle)
        header = [column.strip().lower() for column in reader.fieldnames or []]
        missing = [c for c in CSV_COLUMNS[:4] if c not in header]
        unknown = [c for c in header if c not in CSV_COLUMNS]
        if missing or unknown:
            return (
                [],
                [],
                [
                    f"line 1: the header must name {', '.join(CSV_COLUMNS[:4])} "
                    f"(and optionally reference, phone); "
                    + (
                        f"missing {', '.join(missing)}"
                        if missing
                        else f"unknown {', '.join(unknown)}"
                    )
                ],
            )
        reader.fieldnames = header
        seen: dict[str, int] = {}
        for row in reader:
            line = reader.line_num
            if None in row:
                problems.append(f"line {line}: more columns than the header has")
                continue
            values = {k: (v or "").strip() or None for k, v in row.items()}
            try:
                member = JoinMember(**values)  # type: ignore[arg-type]
            except ValidationError as invalid:
                error = validation_error(invalid)
                problems.append(f"line {line}: {error.message}")
                continue
            key = " ".join(member.name.casefold().split())
            if key in seen:
                problems.append(f"line {line}: {member.name} is also on line {seen[key]}")
                continue
            seen[key] = line
            members.append(member)
            lines.append(line)
    if not members and not problems:
        problems.append("the file has no members in it")
    return members, lines, problems


@members_app.command("import")
def members_import(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(help="CSV with name, tier, billing_email, joined_on[, reference, phone]."),
    ],
) -> None:
    """Enrol every member in a CSV file, or none if any row is bad."""
    from contracts.subscriptions_v1 import ImportMembers

    options = options_of(ctx)
    members, lines, problems = read_members_csv(file)
    if problems:
        fail(
            "nothing imported:\n  " + "\n  ".join(problems),
            options=options,
            detail={"code": "invalid", "message": "nothing imported", "problems": problems},
        )
    reply = send(options, ImportMembers(members=members, lines=lines), timeout=120)
    emit(
        options,
        {"ok": True, **reply},
        lambda: console.print(f"[green]{reply['joined']}[/] members imported from {file}."),
    )


@members_app.command("ls")
def members_ls(
    ctx: typer.Context,
    tier: Annotated[str | None, typer.Option(help="Only this tier.")] = None,
) -> None:
    """List the members."""
    from contracts.subscriptions_v1 import ListMembers

    options = options_of(ctx)
    reply = send(options, build(options, ListMembers, tier=tier), timeout=10)

    def render() -> None:
        table = new_table(title=f"Members ({len(reply['members'])})")
        for column in ("name", "tier", "billing email", "from", "to"):
            table.add_column(column)
        for m in reply["members"]:
            table.add_row(
                m["name"], m["tier"], m["billing_email"], m["starts_on"], m["ends_on"] or ""
            )
        console.print(table)

    emit(options, reply["members"], render)


@members_app.command("show")
def members_show(
    ctx: typer.Context, member: Annotated[str, typer.Argument(help="The member's name or id.")]
) -> None:
    """One member: its membership and its invoices."""
    from contracts.subscriptions_v1 import ShowMember

    options = options_of(ctx)
    reply = send(options, build(options, ShowMember, member=member), timeout=10)

    def render() -> None:
        console.print(f"[bold]{reply['name']}[/]  ({reply['member_id']})")
        console.print(f"tier: {reply['tier_label']} ({reply['tier']})")
        console.print(f"billing: {reply['billing_email']}  {reply['phone'] or ''}")
        if reply["billing_address"]:
            console.print(f"address: {reply['billing_address']}")
        if reply["purchase_order"]:
            console.print(f"purchase order: {reply['purchase_order']}")
        console.print(
            f"member from {reply['starts_on']}"
            + (f" to {reply['ends_on']}" if reply["ends_on"] else "")
        )
        _invoice_table(reply["documents"], "Documents")

    emit(options, reply, render)


@members_app.command("statement")
def members_statement(
    ctx: typer.Context,
    member: Annotated[str, typer.Argument(help="The member's name or id.")],
    on: Annotated[
        str | None, typer.Option("--on", help="As at this day, YYYY-MM-DD (default today).")
    ] = None,
    pdf: Annotated[
        Path | None, typer.Option("--pdf", help="Write the statement's PDF here.")
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write the statement's HTML here.")
    ] = None,
) -> None:
    """A member's statement of account: every invoice, credit note and payment in date
    order with the running balance, the balance due and the debt by age."""
    from contracts.subscriptions_v1 import ShowStatement

    options = options_of(ctx)
    asked = [(path, format) for path, format in ((pdf, "pdf"), (html, "html")) if path]

    def ask(format: str | None) -> dict[str, Any]:
        command = build(options, ShowStatement, member=member, on=on, format=format)
        return send(options, command, timeout=DOCUMENT_TIMEOUT_S)

    statement = ask(asked[0][1] if asked else None)
    for n, (path, format) in enumerate(asked):
        write_document(statement.pop("document") if n == 0 else ask(format)["document"], path)

    def render() -> None:
        console.print(f"[bold]Statement of account: {statement['name']}[/] as at {statement['on']}")
        table = new_table()
        for column in ("date", "document", "details"):
            table.add_column(column)
        for column in ("charged", "credited or paid", "balance"):
            table.add_column(column, justify="right")
        for entry in statement["entries"]:
            table.add_row(
                entry["on"],
                ("payment for " if entry["kind"] == "payment" else "") + entry["number"],
                (entry["reference"] or "") if entry["kind"] == "payment" else entry["description"],
                pounds(entry["debit"]) if entry["debit"] else "",
                pounds(entry["credit"]) if entry["credit"] else "",
                pounds(entry["balance"]),
            )
        console.print(table)
        balance = statement["balance"]
        console.print(
            ("balance due " if balance >= 0 else "in credit ")
            + pounds(abs(balance))
            + f"; overdue {pounds(statement['overdue'])}"
            + (
                f"; credit held {pounds(statement['credit_held'])}"
                if statement["credit_held"]
                else ""
            )
        )
        _aged_table(statement["aged"], statement["outstanding"])
        for path, kind in ((pdf, "PDF"), (html, "HTML")):
            if path is not None:
                console.print(f"{kind} written to {path}")

    emit(options, statement, render)


@members_app.command("change-tier")
def members_change_tier(
    ctx: typer.Context,
    member: Annotated[str, typer.Argument(help="The member's name or id.")],
    tier: Annotated[str, typer.Option(help="The new tier's code.")],
    on: Annotated[str, typer.Option("--on", help="First day at the new tier, YYYY-MM-DD.")],
) -> None:
    """Move a member to another tier; a billed year gets a credit note and a new invoice."""
    from contracts.subscriptions_v1 import ChangeTier

    options = options_of(ctx)
    command = build(options, ChangeTier, member=member, tier=tier, effective_on=on)
    reply = send(options, command, timeout=10)
    emit(
        options,
        {"ok": True, **reply},
        lambda: console.print(
            f"{member} moves to {tier} from {on}."
            + (f" Issued {', '.join(reply['documents'])}." if reply["documents"] else "")
        ),
    )


@members_app.command("leave")
def members_leave(
    ctx: typer.Context,
    member: Annotated[str, typer.Argument(help="The member's name or id.")],
    on: Annotated[str, typer.Option("--on", help="Last day of the membership, YYYY-MM-DD.")],
) -> None:
    """Record that a member leaves; it is not billed for later years."""
    from contracts.subscriptions_v1 import LeaveMember

    options = options_of(ctx)
    reply = send(options, build(options, LeaveMember, member=member, leaves_on=on), timeout=10)
    emit(
        options,
        {"ok": True, **reply},
        lambda: console.print(
            f"{member} leaves on {on}."
            + (f" Refund {', '.join(reply['documents'])}." if reply["documents"] else "")
        ),
    )


@members_app.command("contact")
def members_contact(
    ctx: typer.Context,
    member: Annotated[str, typer.Argument(help="The member's name or id.")],
    email: Annotated[str | None, typer.Option(help="The new billing email.")] = None,
    address: Annotated[
        str | None,
        typer.Option(help="Billing postal address, lines separated by commas ('' removes it)."),
    ] = None,
    po: Annotated[
        str | None,
        typer.Option("--po", help="Purchase-order reference shown on invoices ('' removes it)."),
    ] = None,
) -> None:
    """Change a member's billing contact: email, postal address, purchase-order reference."""
    from contracts.subscriptions_v1 import ChangeBillingContact

    options = options_of(ctx)
    command = build(
        options,
        ChangeBillingContact,
        member=member,
        billing_email=email,
        billing_address=address,
        purchase_order=po,
    )
    reply = send(options, command, timeout=10)
    emit(
        options,
        {"ok": True, **reply},
        lambda: console.print(
            f"{member}: invoices go to {reply['billing_email']}"
            + (f", {reply['billing_address']}" if reply["billing_address"] else "")
            + (f"; purchase order {reply['purchase_order']}" if reply["purchase_order"] else "")
            + "."
        ),
    )


@members_app.command("rejoin")
def members_rejoin(
    ctx: typer.Context,
    member: Annotated[str, typer.Argument(help="The member's name or id.")],
    tier: Annotated[str, typer.Option(help="The tier it rejoins at.")],
    on: Annotated[str, typer.Option("--on", help="First day of the new membership, YYYY-MM-DD.")],
    email: Annotated[
        str | None, typer.Option(help="Billing email (default: the last membership's).")
    ] = None,
) -> None:
    """A member that left joins again, as a new membership."""
    from contracts.subscriptions_v1 import RejoinMember

    options = options_of(ctx)
    command = build(
        options, RejoinMember, member=member, tier=tier, joined_on=on, billing_email=email
    )
    reply = send(options, command, timeout=10)
    emit(
        options,
        {"ok": True, **reply},
        lambda: console.print(
            f"{member} rejoins at the {tier} tier from {on}"
            + (f"; it pays from {reply['pays_from']}" if reply["pays_from"] != on else "")
            + "."
        ),
    )


# Invoicing runs


def invoice_run(
    ctx: typer.Context,
    year: Annotated[
        int | None, typer.Option(help="Financial year: 2026 = Apr 2026 – Mar 2027.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Preview by tier; issue nothing.")
    ] = False,
    status: Annotated[
        bool, typer.Option("--status", help="Show the runs (of --year) instead.")
    ] = False,
    issued_on: Annotated[
        str | None, typer.Option(help="Issue date on the invoices, YYYY-MM-DD (default today).")
    ] = None,
) -> None:
    """Invoice every membership active in a year, once; --dry-run to preview, --status for runs."""
    from contracts.subscriptions_v1 import InvoiceRunStatus, RunInvoicing

    options = options_of(ctx)
    if status:
        reply = send(options, build(options, InvoiceRunStatus, year=year), timeout=10)
        emit(options, reply, lambda: _runs_table(reply["runs"]))
        return
    if year is None:
        fail("--year is required (e.g. --year 2026)", options=options)
    command = build(options, RunInvoicing, year=year, dry_run=dry_run, issued_on=issued_on)
    if dry_run:
        preview = send(options, command, timeout=60)
        emit(options, preview, lambda: _preview_table(preview))
        return
    record = run(options, _follow_run(options, command))
    emit(options, record, lambda: _run_summary(record))
    if record["status"] != "completed":
        raise typer.Exit(1)


async def _follow_run(options: Options, command: RunInvoicing) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from contracts.subscriptions_v1 import InvoiceRunStatus
    from kernel.commands import request

    async with connected(options.nats) as nc:
        record = await request(nc, command)
        with Progress(
            TextColumn(f"Invoicing {command.year}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=options.json,
        ) as progress:
            task = progress.add_task("run", total=max(record["to_bill"], 1))
            while record["status"] in ("queued", "running"):
                await asyncio.sleep(0.2)
                record = await request(nc, InvoiceRunStatus(run_id=record["run_id"]))
                progress.update(task, completed=record["issued"] + record["skipped"])
            progress.update(task, completed=max(record["to_bill"], 1))
        return record


def _preview_table(preview: dict[str, Any]) -> None:
    table = new_table(title=f"Dry run: invoicing {preview['year']} (nothing issued)")
    for column in ("tier", "members", "net", "VAT", "gross"):
        table.add_column(column, justify="right" if column != "tier" else "left")
    for t in preview["tiers"]:
        table.add_row(
            t["tier"], str(t["members"]), pounds(t["net"]), pounds(t["vat"]), pounds(t["gross"])
        )
    table.add_row(
        "[bold]total[/]",
        str(preview["to_issue"]),
        pounds(preview["net"]),
        pounds(preview["vat"]),
        f"[bold]{pounds(preview['gross'])}[/]",
    )
    console.print(table)
    console.print(f"{preview['already_billed']} already billed for {preview['year']}.")


def _run_summary(record: dict[str, Any]) -> None:
    colour = "green" if record["status"] == "completed" else "red"
    console.print(
        f"Run {record['run_id']} for {record['year']}: [{colour}]{record['status']}[/]. "
        f"Issued {record['issued']} invoices, {pounds(record['net'])} net, "
        f"{pounds(record['gross'])} gross; {record['already_billed']} already billed."
    )


def _runs_table(runs: list[dict[str, Any]]) -> None:
    table = new_table(title="Invoicing runs")
    for column in (
        "run",
        "year",
        "status",
        "trigger",
        "started",
        "finished",
        "issued",
        "already billed",
        "gross",
    ):
        table.add_column(column)
    for r in runs:
        table.add_row(
            r["run_id"][:8],
            str(r["year"]),
            r["status"],
            r["trigger"],
            (r["started_at"] or "")[:19],
            (r["finished_at"] or "")[:19],
            str(r["issued"]),
            str(r["already_billed"]),
            pounds(r["gross"]),
        )
    console.print(table)


# Invoices


def _invoice_table(invoices: list[dict[str, Any]], title: str) -> None:
    table = new_table(title=f"{title} ({len(invoices)})")
    table.add_column("number", no_wrap=True)
    table.add_column("billed")
    for column in ("year", "issued", "due", "gross", "outstanding", "status"):
        table.add_column(
            column, no_wrap=True, justify="right" if column in ("gross", "outstanding") else "left"
        )
    for i in invoices:
        table.add_row(
            i["number"],
            i["billed_name"],
            str(i["year"]),
            i["issued_on"],
            i["due_on"] or "",
            pounds(i["gross"]),
            pounds(i["outstanding"]),
            i["status"].replace("_", " "),
        )
    console.print(table)


@invoices_app.command("ls")
def invoices_ls(
    ctx: typer.Context,
    year: Annotated[int | None, typer.Option(help="Only this financial year.")] = None,
    status: Annotated[
        str | None, typer.Option(help="issued, part_paid, paid, void or overdue.")
    ] = None,
) -> None:
    """List invoices and credit notes."""
    from contracts.subscriptions_v1 import ListInvoices

    options = options_of(ctx)
    reply = send(options, build(options, ListInvoices, year=year, status=status), timeout=10)
    emit(options, reply["invoices"], lambda: _invoice_table(reply["invoices"], "Invoices"))


@invoices_app.command("show")
def invoices_show(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="Invoice or credit note number, e.g. INV-000001.")],
    html: Annotated[
        Path | None, typer.Option("--html", help="Write the printable HTML here.")
    ] = None,
    pdf: Annotated[
        Path | None,
        typer.Option(
            "--pdf", help="Write the PDF here: the same bytes the billing contact was sent."
        ),
    ] = None,
) -> None:
    """One invoice or credit note, with its lines and payments."""
    from contracts.subscriptions_v1 import ShowDocument, ShowInvoice

    options = options_of(ctx)
    document = send(
        options, build(options, ShowInvoice, number=number, html=html is not None), timeout=10
    )
    if html is not None:
        html.write_text(document.pop("html"), encoding="utf-8")
    if pdf is not None:
        printed = send(
            options,
            build(options, ShowDocument, number=document["number"], format="pdf"),
            timeout=DOCUMENT_TIMEOUT_S,
        )
        write_document(printed, pdf)

    def render() -> None:
        kind = "Credit note" if document["kind"] == "credit_note" else "Invoice"
        console.print(
            f"[bold]{kind} {document['number']}[/] to {document['billed_name']} <{document['billing_email']}>"
        )
        console.print(
            f"issued {document['issued_on']}"
            + (f", due {document['due_on']}" if document["due_on"] else "")
            + f"; {document['status'].replace('_', ' ')}"
        )
        table = new_table()
        for column in ("description", "net", "VAT", "gross"):
            table.add_column(column)
        for line in document["lines"]:
            table.add_row(
                line["description"], pounds(line["net"]), pounds(line["vat"]), pounds(line["gross"])
            )
        table.add_row(
            "[bold]total[/]",
            pounds(document["net"]),
            pounds(document["vat"]),
            pounds(document["gross"]),
        )
        console.print(table)
        if document["kind"] == "invoice":
            console.print(
                f"paid {pounds(document['paid'])}, outstanding {pounds(document['outstanding'])}"
            )
        if html is not None:
            console.print(f"HTML written to {html}")
        if pdf is not None:
            console.print(f"PDF written to {pdf}")

    emit(options, document, render)


@invoices_app.command("summary")
def invoices_summary(
    ctx: typer.Context,
    year: Annotated[int, typer.Option(help="Financial year.")],
    on: Annotated[str | None, typer.Option("--on", help="Age debt as at, YYYY-MM-DD.")] = None,
) -> None:
    """Billed, paid and outstanding by tier, and aged debt."""
    from contracts.subscriptions_v1 import InvoiceSummary

    options = options_of(ctx)
    summary = send(options, build(options, InvoiceSummary, year=year, on=on), timeout=10)

    def render() -> None:
        table = new_table(title=f"Financial year {year} as at {summary['on']}")
        figures = ("net", "vat", "billed", "credited", "paid", "outstanding")
        table.add_column("tier")
        table.add_column("invoices", justify="right")
        for column in figures:
            table.add_column("VAT" if column == "vat" else column, justify="right")
        for row in [*summary["tiers"], {"tier": "[bold]total[/]", **summary["totals"]}]:
            table.add_row(
                row["tier"], str(row["invoices"]), *(pounds(row[column]) for column in figures)
            )
        console.print(table)
        _aged_table(summary["aged"], summary["totals"]["outstanding"])

    emit(options, summary, render)


def _aged_table(aged: dict[str, int], outstanding: int) -> None:
    table = new_table(title="Outstanding by age (days past due)")
    for bucket in aged:
        table.add_column(bucket.replace("_", " "), justify="right")
    table.add_column("outstanding", justify="right")
    table.add_row(*(pounds(v) for v in aged.values()), pounds(outstanding))
    console.print(table)


@invoices_app.command("void")
def invoices_void(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="Invoice number.")],
    reason: Annotated[str, typer.Option(help="Why it is void.")],
) -> None:
    """Void an invoice nothing has been paid against."""
    from contracts.subscriptions_v1 import VoidInvoice

    options = options_of(ctx)
    reply = send(options, build(options, VoidInvoice, invoice=number, reason=reason), timeout=10)
    emit(options, {"ok": True, **reply}, lambda: console.print(f"{reply['invoice']} is void."))


@invoices_app.command("reissue")
def invoices_reissue(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="The void yearly invoice's number.")],
) -> None:
    """Bill a member again for the year of a void invoice, under a new number."""
    from contracts.subscriptions_v1 import ReissueInvoice

    options = options_of(ctx)
    reply = send(options, build(options, ReissueInvoice, invoice=number), timeout=10)
    emit(
        options,
        {"ok": True, **reply},
        lambda: console.print(
            f"{reply['invoice']} issued for {pounds(reply['gross'])}; "
            f"it replaces {reply['replaces']} (void)."
        ),
    )


# Payments


@payments_app.command("record")
def payments_record(
    ctx: typer.Context,
    invoice: Annotated[str, typer.Option(help="Invoice number.")],
    amount: Annotated[str, typer.Option(help="Amount received in pounds, e.g. 1,000.50.")],
    on: Annotated[str, typer.Option("--on", help="Day received, YYYY-MM-DD.")],
    ref: Annotated[str | None, typer.Option("--ref", help="Bank reference.")] = None,
) -> None:
    """Record a payment against an invoice (part payments allowed, overpayments refused)."""
    from contracts.money import Money
    from contracts.subscriptions_v1 import RecordPayment
    from contracts.system_v1 import CommandError

    options = options_of(ctx)
    try:
        pence = parse_amount(amount)
    except ValueError as bad:
        refuse(CommandError(code="invalid", message=str(bad), field="amount"), options)
    command = build(
        options,
        RecordPayment,
        invoice=invoice,
        amount=Money(amount_minor=pence),
        received_on=on,
        reference=ref,
    )
    reply = send(options, command, timeout=10)
    emit(
        options,
        {"ok": True, **reply},
        lambda: console.print(
            f"{reply['invoice']}: {reply['status'].replace('_', ' ')}, "
            f"{pounds(reply['outstanding'])} outstanding."
        ),
    )
