"""`vestry staff add|ls|set-roles|disable|enable|reset-password`: back-office accounts.

Staff accounts live in the web service's own store; like every command, these ask
the running web service over NATS (request/reply, ``web.cmd.staff_*``) and never
open its store. A password is typed at a hidden prompt (twice), or read from the
first line of standard input with ``--password-stdin``; it travels to the web
service, which keeps only its Argon2id hash.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from vestry import terminal
from vestry.terminal import console, emit, new_table, options_of, send

staff_app = typer.Typer(no_args_is_help=True, help="Staff accounts for the back office.")

# The web service's roles (services.web.office.commands.ROLES), written out so that the
# help is shown without loading the service; a unit test keeps the two the same.
ROLE_NAMES = ("finance", "events", "comms", "operator", "admin")
RolesOption = Annotated[
    list[str],
    typer.Option(
        "--role",
        help=f"A role, repeated for several: {', '.join(ROLE_NAMES)}.",
        show_default=False,
    ),
]
StaffArgument = Annotated[str, typer.Argument(help="The account's email address (or id).")]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt(
        "Password (12 characters or more)", hide_input=True, confirmation_prompt=True
    )


def show(account: dict[str, Any], doing: str) -> None:
    roles = ", ".join(account["roles"])
    state = " (disabled)" if account["disabled"] else ""
    ended = account.get("sessions_ended")
    tail = f"; {ended} session(s) ended" if ended else ""
    console.print(f"{account['email']}{state} {doing}: roles {roles}{tail}.")


@staff_app.command("add")
def add(
    ctx: typer.Context,
    email: Annotated[str, typer.Option(help="Their work email address: what they sign in with.")],
    name: Annotated[str, typer.Option(help="Their name, as the audit record shows it.")],
    role: RolesOption,
    password_stdin: PasswordStdin = False,
) -> None:
    """Give a member of staff an account with one or more roles."""
    from services.web.office.commands import AddStaff

    options = options_of(ctx)
    password = read_password(password_stdin)
    command = terminal.build(
        options,
        lambda: AddStaff(email=email, name=name, roles=role, password=password),  # type: ignore[arg-type]
    )
    account = send(options, command, timeout=10)
    emit(options, {"ok": True, **account}, lambda: show(account, "added"))


@staff_app.command("ls")
def ls(ctx: typer.Context) -> None:
    """Every staff account: roles, whether disabled, last sign-in, live sessions."""
    from services.web.office.commands import ListStaff

    options = options_of(ctx)
    staff = send(options, ListStaff(), timeout=10)["staff"]

    def render() -> None:
        table = new_table(title=f"Staff accounts ({len(staff)})")
        for column in ("email", "name", "roles", "state", "last sign-in (UTC)", "sessions"):
            table.add_column(column)
        for account in staff:
            table.add_row(
                account["email"],
                account["name"],
                ", ".join(account["roles"]),
                "[red]disabled[/]" if account["disabled"] else "enabled",
                (account["last_sign_in_at"] or "never")[:16].replace("T", " "),
                str(account["sessions"]),
            )
        console.print(table)

    emit(options, staff, render)


@staff_app.command("set-roles")
def set_roles(ctx: typer.Context, staff: StaffArgument, role: RolesOption) -> None:
    """Replace an account's roles; pages they have open follow at their next request."""
    from services.web.office.commands import SetStaffRoles

    options = options_of(ctx)
    command = terminal.build(options, lambda: SetStaffRoles(staff=staff, roles=role))  # type: ignore[arg-type]
    account = send(options, command, timeout=10)
    emit(options, {"ok": True, **account}, lambda: show(account, "updated"))


@staff_app.command("disable")
def disable(ctx: typer.Context, staff: StaffArgument) -> None:
    """Stop an account signing in, and end its sessions at once."""
    from services.web.office.commands import DisableStaff

    options = options_of(ctx)
    account = send(options, DisableStaff(staff=staff), timeout=10)
    emit(options, {"ok": True, **account}, lambda: show(account, "disabled"))


@staff_app.command("enable")
def enable(ctx: typer.Context, staff: StaffArgument) -> None:
    """Let a disabled account sign in again."""
    from services.web.office.commands import DisableStaff

    options = options_of(ctx)
    account = send(options, DisableStaff(staff=staff, disabled=False), timeout=10)
    emit(options, {"ok": True, **account}, lambda: show(account, "enabled"))


@staff_app.command("reset-password")
def reset_password(
    ctx: typer.Context, staff: StaffArgument, password_stdin: PasswordStdin = False
) -> None:
    """Set a new password: ends the account's sessions and lifts any lockout."""
    from services.web.office.commands import ResetStaffPassword

    options = options_of(ctx)
    password = read_password(password_stdin)
    command = terminal.build(options, lambda: ResetStaffPassword(staff=staff, password=password))
    account = send(options, command, timeout=10)
    emit(options, {"ok": True, **account}, lambda: show(account, "has a new password"))
