"""The audit stream (OPS): who did what, recorded by whoever carried it out, version 1."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.envelope import Message
from contracts.registry import register

ACTIONS: tuple[str, ...] = (
    # subscriptions
    "record_payment",
    "void_invoice",
    "reissue_invoice",
    "run_invoicing",
    "change_tier",
    "leave_member",
    "rejoin_member",
    "change_billing_contact",
    # events
    "create_event",
    "update_event",
    "publish_event",
    "cancel_event",
    # notifications
    "resend",
    "send_broadcast",
    # web: staff accounts
    "staff_add",
    "staff_roles",
    "staff_disable",
    "staff_enable",
    "staff_password",
    # every service, for operators: what kernel/runtime.py carries out
    "replay",
    "redrive",
    "rebuild",
    # the vestry CLI itself
    "purge",
    "forget",
)
"""The actions recorded so far; a new action needs no new version."""

DEVELOPMENT = "development"
"""The NATS user named when NATS has no users (``vestry dev``): replies under ``_INBOX``."""


class ActionBy(BaseModel):
    """Who an action is recorded against: a member of staff, or a NATS user.

    ``staff`` when the request's envelope carried an actor (a back-office page sends
    the signed-in staff member on every command); otherwise ``nats_user``, the user
    whose inbox the request's reply subject names. Each production NATS user may read
    only its own ``_INBOX_<user>`` (deploy/nats/accounts.conf), so that user is the only
    one who could receive the answer; it is not proof of who sent the request. Any
    user allowed to send the command may name another's inbox as its reply subject
    (it then never sees the answer), and the actor on an envelope is what the sender
    says: both are trusted as far as the NATS permissions that let a user send the
    command at all.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["staff", "nats_user"] = Field(
        description="staff: a signed-in member of staff; nats_user: a NATS user (the CLI, "
        "or a process acting for nobody in particular)."
    )
    name: str = Field(
        max_length=200,
        description="The staff member's name, or the NATS user's: development where NATS has "
        "no users (vestry dev), unknown where the request asked for no answer.",
        examples=["Fiona Finance", "operator", "development"],
    )
    staff_id: str | None = Field(
        default=None, max_length=64, description="The staff account's id, for staff."
    )
    address: str | None = Field(
        default=None,
        max_length=100,
        description="For staff, the client's IP address as the back office saw it.",
    )
    nats_user: str = Field(
        max_length=100,
        description="The NATS user the request came through, from its reply subject (web for "
        "the back office), development without users, unknown without a reply subject.",
        examples=["web", "operator", "development"],
    )


@register
class ActionRecorded(Message):
    """Fact: somebody changed something through a service, the web service or the CLI.

    Sent once per action that took effect, by whoever carried it out, on the OPS
    stream: a service's commands that change money, memberships or deliveries
    (payments, voids, reissues, invoicing runs and their dry runs, tier changes,
    leaving, rejoining, billing contacts, resends, broadcasts), operators' replays
    (dry runs too), redrives and rebuilds, staff account changes, and the CLI's own
    `vestry dlq purge` and `vestry people forget`. A service writes it to its outbox in
    the transaction of the effect (a replay, redrive or rebuild: in one of its own
    right after), so a refused or failed command records nothing and a retry answered
    from the first answer records nothing again. Not sent for queries, refusals,
    failures, or work a service does on its own (scheduled runs, fact handlers). It
    names no person but the member of staff: no booker, contact or address.
    """

    TYPE: ClassVar[str] = "ActionRecorded"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "ops.action.recorded"
    KIND: ClassVar[Literal["fact"]] = "fact"

    action: str = Field(
        pattern=r"^[a-z][a-z_]{1,39}$",
        description="What was done: " + ", ".join(ACTIONS) + ".",
        examples=["record_payment", "replay"],
    )
    service: str = Field(
        max_length=40,
        description="Who carried it out: a service, web (staff accounts) or cli (the vestry "
        "command itself).",
        examples=["subscriptions", "cli"],
    )
    target: str | None = Field(
        default=None,
        max_length=200,
        description="What it was done to: an invoice number, a member, a stream, a delivery, "
        "a staff account's id, a year.",
        examples=["INV-2026-0001", "EVENTS"],
    )
    filters: dict[str, Any] = Field(
        default_factory=dict,
        description="What it was asked with: a replay's range, a payment's amount and date, "
        "a tier and its date. No personal data.",
    )
    result: dict[str, Any] = Field(
        default_factory=dict, description="What came of it: counts, numbers, statuses."
    )
    dry_run: bool = Field(default=False, description="A preview: nothing was changed.")
    request_id: str | None = Field(
        default=None,
        max_length=64,
        description="The id of the request that asked for it: the command's envelope id, or "
        "the Vestry-Request-Id header of a replay, redrive or rebuild.",
    )
    by: ActionBy = Field(description="Who asked for it.")
    host: str | None = Field(
        default=None, max_length=255, description="The host of the process that carried it out."
    )
