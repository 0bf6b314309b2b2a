"""The web service's own commands: staff accounts, answered over NATS request/reply.

`vestry staff …` sends these; the web service answers them from its own store, so
no other process opens that store (the rule every service keeps). They are not in
``contracts/`` because no service sends or reads them: only the operator's CLI and
the web service speak them, and they carry no fact to any stream. Like every
command they travel in an ``Envelope`` and are answered with a ``Reply``.

Who may send them is NATS's to say: in production only the operator's NATS user may
publish on ``web.cmd.>`` (see deploy/nats/accounts.conf), the same trust that lets it
run invoicing or redrive dead letters.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints

from contracts.emails import EmailStr
from contracts.envelope import Message

Role = Literal["finance", "events", "comms", "operator", "admin"]
ROLES: dict[str, str] = {
    "finance": "Finance: members, invoices, runs, payments and credit notes",
    "events": "Events: events, bookings on someone's behalf, check-in and reports",
    "comms": "Alerts: contacts, topics, broadcasts and deliveries",
    "operator": "Operations: streams, dead letters, replay and rebuild",
    "admin": "Staff accounts",
}
StaffRef = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=320)]
# NCSC: length, not composition rules; long enough to resist guessing offline.
Password = Annotated[str, StringConstraints(min_length=12, max_length=256)]


class _StaffCommand(Message):
    KIND: ClassVar[Literal["command"]] = "command"
    VERSION: ClassVar[int] = 1


class AddStaff(_StaffCommand):
    """Command: give a member of staff a back-office account with roles.

    Answered with the account (never its password). Refused: ``conflict`` when the
    address already has an account, ``invalid`` for a bad field (a password under
    12 characters, an unknown role).
    """

    TYPE: ClassVar[str] = "AddStaff"
    SUBJECT: ClassVar[str] = "web.cmd.staff_add"

    email: EmailStr = Field(description="Their work email address: what they sign in with.")
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] = (
        Field(description="Their name, as the audit record shows it.")
    )
    roles: list[Role] = Field(min_length=1, description="What they may do; several allowed.")
    password: Password = Field(repr=False, description="Their first password; kept only hashed.")


class ListStaff(_StaffCommand):
    """Query: every staff account with its roles, state and live sessions. Changes nothing."""

    TYPE: ClassVar[str] = "ListStaff"
    SUBJECT: ClassVar[str] = "web.cmd.staff_list"


class SetStaffRoles(_StaffCommand):
    """Command: replace a staff member's roles; their open pages follow at the next request.

    Refused: ``not_found`` for an unknown account.
    """

    TYPE: ClassVar[str] = "SetStaffRoles"
    SUBJECT: ClassVar[str] = "web.cmd.staff_set_roles"

    staff: StaffRef = Field(description="The account's email address or id.")
    roles: list[Role] = Field(min_length=1, description="Their roles from now on.")


class DisableStaff(_StaffCommand):
    """Command: stop (or allow again) an account signing in; disabling ends its sessions.

    Refused: ``not_found`` for an unknown account.
    """

    TYPE: ClassVar[str] = "DisableStaff"
    SUBJECT: ClassVar[str] = "web.cmd.staff_disable"

    staff: StaffRef = Field(description="The account's email address or id.")
    disabled: bool = Field(default=True, description="False enables the account again.")


class ResetStaffPassword(_StaffCommand):
    """Command: set a new password, end every session of the account and lift its lockout.

    Refused: ``not_found`` for an unknown account, ``invalid`` for a short password.
    """

    TYPE: ClassVar[str] = "ResetStaffPassword"
    SUBJECT: ClassVar[str] = "web.cmd.staff_reset_password"

    staff: StaffRef = Field(description="The account's email address or id.")
    password: Password = Field(repr=False, description="The new password; kept only hashed.")


STAFF_COMMANDS: tuple[type[Message], ...] = (
    AddStaff,
    ListStaff,
    SetStaffRoles,
    DisableStaff,
    ResetStaffPassword,
)
