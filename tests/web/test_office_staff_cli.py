"""`vestry staff …` against a running web service: the CLI asks over NATS, the web
service answers from its own store, and what it does shows at the site's door."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from sqlalchemy import select
from typer.testing import CliRunner

from kernel.settings import Settings
from kernel.store import create_engine
from services.web import store
from services.web.office.accounts import SESSION_COOKIE
from tests.web.test_office_access import PASSWORD, sign_in
from tests.web_support import form_token, running_site
from vestry.cli import app

EMAIL = "fiona.finance@partnership.example.org"


async def vestry(settings: Settings, *args: str, stdin: str | None = None) -> Any:
    """Run `vestry --json ARGS` in a thread (it runs its own event loop); exit code, output."""
    runner = CliRunner()
    result = await asyncio.to_thread(
        runner.invoke, app, ["--nats", settings.nats_url, "--json", *args], input=stdin
    )
    return result.exit_code, result.output


async def test_staff_accounts_are_managed_through_the_web_service(settings: Settings) -> None:
    async with (
        running_site(settings) as site,
        httpx.AsyncClient(base_url=site.url, timeout=30) as client,
    ):
        code, out = await vestry(
            settings,
            "staff", "add", "--email", EMAIL, "--name", "Fiona Finance",
            "--role", "finance", "--role", "events", "--password-stdin",
            stdin=PASSWORD + "\n",
        )  # fmt: skip
        assert code == 0, out
        added = json.loads(out)
        assert added["roles"] == ["events", "finance"]
        assert "password" not in out and PASSWORD not in out

        # Only an Argon2id hash is kept.
        engine = create_engine(settings.database_url("web"))
        async with engine.connect() as connection:
            hashed = await connection.scalar(select(store.StaffAccount.password_hash))
        await engine.dispose()
        assert hashed.startswith("$argon2id$") and PASSWORD not in hashed

        code, out = await vestry(
            settings, "staff", "add", "--email", EMAIL.upper(), "--name", "Again",
            "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n",
        )  # fmt: skip
        assert code == 1 and json.loads(out)["error"]["code"] == "conflict"
        code, out = await vestry(
            settings, "staff", "add", "--email", "short@partnership.example.org",
            "--name", "Short", "--role", "admin", "--password-stdin", stdin="tooshort\n",
        )  # fmt: skip
        assert code == 1 and json.loads(out)["error"]["field"] == "password"
        code, out = await vestry(
            settings, "staff", "add", "--email", "odd@partnership.example.org",
            "--name", "Odd", "--role", "superuser", "--password-stdin", stdin=PASSWORD + "\n",
        )  # fmt: skip
        assert code == 1 and json.loads(out)["error"]["field"].startswith("roles")

        assert (await sign_in(client, EMAIL)).status_code == 303
        code, out = await vestry(settings, "staff", "ls")
        [listed] = json.loads(out)
        assert (listed["email"], listed["sessions"], listed["disabled"]) == (EMAIL, 1, False)
        assert listed["last_sign_in_at"] is not None

        code, out = await vestry(settings, "staff", "set-roles", EMAIL, "--role", "comms")
        assert code == 0 and json.loads(out)["roles"] == ["comms"]
        assert (await client.get("/office/invoices")).status_code == 403

        new_password = "a much longer new password"
        code, out = await vestry(
            settings, "staff", "reset-password", EMAIL, "--password-stdin", stdin=new_password
        )
        assert code == 0 and json.loads(out)["sessions_ended"] == 1
        assert (await client.get("/office/")).status_code == 303
        client.cookies.delete(SESSION_COOKIE)
        assert (await sign_in(client, EMAIL)).status_code == 400  # the old one is gone
        assert (await sign_in(client, EMAIL, new_password)).status_code == 303

        code, out = await vestry(settings, "staff", "disable", EMAIL)
        assert code == 0 and json.loads(out)["sessions_ended"] == 1
        assert (await client.get("/office/")).status_code == 303
        client.cookies.delete(SESSION_COOKIE)
        assert (await sign_in(client, EMAIL, new_password)).status_code == 400
        code, out = await vestry(settings, "staff", "enable", EMAIL)
        assert code == 0 and json.loads(out)["disabled"] is False
        assert (await sign_in(client, EMAIL, new_password)).status_code == 303
        token = await form_token(client, "/office/account")
        assert (
            await client.post("/office/sign-out", data={"csrf_token": token})
        ).status_code == 303

        code, out = await vestry(settings, "staff", "disable", "nobody@partnership.example.org")
        assert code == 1 and json.loads(out)["error"]["code"] == "not_found"


async def test_a_password_reset_at_the_prompt_lifts_a_lockout(settings: Settings) -> None:
    async with (
        running_site(settings) as site,
        httpx.AsyncClient(base_url=site.url, timeout=30) as client,
    ):
        code, _ = await vestry(
            settings, "staff", "add", "--email", EMAIL, "--name", "Fiona Finance",
            "--role", "finance", "--password-stdin", stdin=PASSWORD,
        )  # fmt: skip
        assert code == 0
        for attempt in range(10):
            await sign_in(client, EMAIL, f"wrong guess {attempt}")
        assert (await sign_in(client, EMAIL)).status_code == 429
        # Typed at the hidden prompt, twice.
        code, out = await vestry(
            settings, "staff", "reset-password", EMAIL, stdin=f"{PASSWORD}\n{PASSWORD}\n"
        )
        assert code == 0, out
        assert (await sign_in(client, EMAIL)).status_code == 303


async def test_without_a_web_service_the_cli_says_so(settings: Settings) -> None:
    code, out = await vestry(settings, "staff", "ls")
    assert code == 2
    assert "web" in json.loads(out)["error"]["message"]
