"""The web service answering `vestry staff …`: one handler per staff command.

Each runs in one transaction of the web store through ``kernel.commands.answer``, like
every service's commands; a refusal changes nothing. The CLI never opens this store.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from contracts import Envelope
from kernel import audit
from kernel.commands import CommandContext, Refused, answer
from kernel.settings import Settings
from services.web import NAME, store
from services.web.office.accounts import Accounts, sorted_roles
from services.web.office.commands import (
    AddStaff,
    DisableStaff,
    ListStaff,
    ResetStaffPassword,
    SetStaffRoles,
)

log = logging.getLogger(__name__)


def account_view(account: store.StaffAccount, sessions: int = 0) -> dict[str, Any]:
    return {
        "staff_id": account.id,
        "email": account.email,
        "name": account.name,
        "roles": sorted(account.role_set),
        "disabled": account.disabled,
        "last_sign_in_at": account.last_sign_in_at.isoformat() if account.last_sign_in_at else None,
        "sessions": sessions,
    }


class StaffHandlers:
    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts

    async def _account(self, ctx: CommandContext, ref: str) -> store.StaffAccount:
        account = await store.staff_by_ref(ctx.session, ref)
        if account is None:
            raise Refused("not_found", f"no staff account {ref}", "staff")
        return account

    async def add(self, command: AddStaff, ctx: CommandContext) -> dict[str, Any]:
        if await store.staff_by_email(ctx.session, command.email):
            raise Refused("conflict", f"{command.email} already has a staff account", "email")
        account = self.accounts.new_account(
            email=command.email,
            name=command.name,
            roles=list(command.roles),
            password_hash=await self.accounts.passwords.hash(command.password),
        )
        ctx.session.add(account)
        log.info("staff account %s added with roles %s", account.id, account.roles)
        await ctx.record_action(
            "staff_add", target=account.id, filters={"roles": sorted(account.role_set)}
        )
        return account_view(account)

    async def list(self, command: ListStaff, ctx: CommandContext) -> dict[str, Any]:
        counts = await store.session_counts(ctx.session, self.accounts.clock())
        return {
            "staff": [
                account_view(account, counts.get(account.id, 0))
                for account in await store.all_staff(ctx.session)
            ]
        }

    async def set_roles(self, command: SetStaffRoles, ctx: CommandContext) -> dict[str, Any]:
        account = await self._account(ctx, command.staff)
        account.roles = sorted_roles(list(command.roles))
        account.updated_at = self.accounts.clock()
        log.info("staff account %s now has roles %s", account.id, account.roles)
        await ctx.record_action(
            "staff_roles", target=account.id, filters={"roles": sorted(account.role_set)}
        )
        return account_view(account)

    async def disable(self, command: DisableStaff, ctx: CommandContext) -> dict[str, Any]:
        account = await self._account(ctx, command.staff)
        account.disabled = command.disabled
        account.updated_at = self.accounts.clock()
        ended = await store.end_sessions_of(ctx.session, account.id) if command.disabled else 0
        log.info("staff account %s %s", account.id, "disabled" if command.disabled else "enabled")
        await ctx.record_action(
            "staff_disable" if command.disabled else "staff_enable",
            target=account.id,
            result={"sessions_ended": ended},
        )
        return {**account_view(account), "sessions_ended": ended}

    async def reset_password(
        self, command: ResetStaffPassword, ctx: CommandContext
    ) -> dict[str, Any]:
        account = await self._account(ctx, command.staff)
        account.password_hash = await self.accounts.passwords.hash(command.password)
        account.updated_at = self.accounts.clock()
        ended = await store.end_sessions_of(ctx.session, account.id)
        await store.clear_failures(ctx.session, account.email)
        log.info("staff account %s has a new password", account.id)
        await ctx.record_action(
            "staff_password", target=account.id, result={"sessions_ended": ended}
        )
        return {**account_view(account), "sessions_ended": ended}


async def answer_staff_commands(
    client: Client, accounts: Accounts, settings: Settings | None = None
) -> list[Subscription]:
    """Answer every staff command on its subject, one web replica each (queue group).

    Each change is recorded in the audit stream (OPS). The web service has no outbox:
    the record is published once the change has committed, under an id fixed by the
    command's envelope id, so a retry's record is dropped by JetStream."""
    handlers = StaffHandlers(accounts)
    settings = settings or Settings()
    js = client.jetstream()

    async def record(envelopes: Sequence[Envelope]) -> None:
        await audit.publish(
            js,
            envelopes,
            duplicate_window_s=settings.duplicate_window_s,
            replicas=settings.stream_replicas,
        )

    table: list[tuple[Any, Callable[[Any, CommandContext], Awaitable[dict[str, Any]]]]] = [
        (AddStaff, handlers.add),
        (ListStaff, handlers.list),
        (SetStaffRoles, handlers.set_roles),
        (DisableStaff, handlers.disable),
        (ResetStaffPassword, handlers.reset_password),
    ]
    subscriptions = []
    for model, handler in table:

        async def endpoint(msg: Msg, model: Any = model, handler: Any = handler) -> None:
            reply = await answer(
                msg.data,
                model=model,
                handler=handler,
                sessions=accounts.sessions,
                on_commit=lambda: None,
                reply_to=msg.reply,
                after_commit=record,
            )
            await msg.respond(reply.model_dump_json().encode())

        subscriptions.append(await client.subscribe(model.SUBJECT, queue=NAME, cb=endpoint))
    return subscriptions
