"""The web service's own store and the rules of staff accounts, on SQLite and on
PostgreSQL: the lockout count holds under concurrent guesses, sessions lapse, and only
digests and hashes are kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from kernel import migrations
from kernel.store import create_engine, session_factory
from services.web import store
from services.web.office.accounts import Accounts, lock_for, token_digest
from services.web.office.app import MIGRATIONS
from services.web.settings import WebSettings
from tests.conftest import fresh_database

PASSWORD = "correct horse battery staple"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'web.sqlite3'}"
        return
    # Asked for here, not as an argument, so SQLite cases never wait for PostgreSQL.
    admin_url: str = request.getfixturevalue("postgres_admin_url")
    async with fresh_database(admin_url, "vestry_web") as url:
        yield url


@pytest.fixture
async def accounts(store_url: str) -> AsyncIterator[Accounts]:
    engine = create_engine(store_url)
    await migrations.upgrade(engine, MIGRATIONS)
    await migrations.upgrade(engine, MIGRATIONS)  # a second start finds it at head
    made = Accounts(session_factory(engine), WebSettings(), clock=Clock())
    async with made.sessions() as session, session.begin():
        session.add(
            made.new_account(
                email="Fiona.Finance@partnership.example.org",
                name="Fiona Finance",
                roles=["finance", "events", "finance"],
                password_hash=await made.passwords.hash(PASSWORD),
            )
        )
    yield made
    await engine.dispose()


def test_the_lock_starts_at_the_tenth_wrong_password_and_doubles_up_to_a_day() -> None:
    first = timedelta(minutes=15)
    locks = [lock_for(n, after=10, first=first) for n in range(1, 20)]
    assert locks[:9] == [None] * 9
    assert locks[9:13] == [first, first * 2, first * 4, first * 8]
    assert lock_for(1000, after=10, first=first) == timedelta(days=1)


async def test_concurrent_wrong_passwords_are_all_counted(accounts: Accounts) -> None:
    outcomes = await asyncio.gather(
        *(
            accounts.sign_in("fiona.finance@partnership.example.org", f"guess {n}", address=None)
            for n in range(12)
        )
    )
    assert all(o.token is None for o in outcomes)
    async with accounts.sessions() as session:
        failures = await store.failures_of(session, "fiona.finance@partnership.example.org")
    assert failures is not None and failures.failures == 12
    assert failures.locked_until is not None and failures.locked_until > accounts.clock()
    locked = await accounts.sign_in("fiona.finance@partnership.example.org", PASSWORD, address=None)
    assert locked.token is None and locked.locked_until == failures.locked_until


async def test_a_session_is_kept_as_a_digest_and_lapses(accounts: Accounts) -> None:
    clock: Clock = accounts.clock  # type: ignore[assignment]
    outcome = await accounts.sign_in(
        "FIONA.finance@partnership.example.org", PASSWORD, address="192.0.2.7"
    )
    assert outcome.token is not None and outcome.staff is not None
    assert outcome.staff.roles == {"finance", "events"}
    async with accounts.sessions() as session:
        [kept] = list(await session.scalars(select(store.StaffSession)))
    assert kept.token_digest == token_digest(outcome.token) != outcome.token
    assert kept.address == "192.0.2.7"

    clock.now += timedelta(minutes=29)
    assert await accounts.identify(outcome.token) is not None  # and it is touched
    clock.now += timedelta(minutes=29)
    assert await accounts.identify(outcome.token) is not None
    clock.now += timedelta(minutes=31)
    assert await accounts.identify(outcome.token) is None  # idle too long
    assert await accounts.identify(outcome.token) is None  # and gone from the store

    second = await accounts.sign_in("fiona.finance@partnership.example.org", PASSWORD, address=None)
    assert second.token is not None
    signed_in_at = clock.now
    while await accounts.identify(second.token) is not None:  # in use every 29 minutes
        clock.now += timedelta(minutes=29)
    lasted = clock.now - signed_in_at
    assert timedelta(hours=12) <= lasted < timedelta(hours=12, minutes=29)
    async with accounts.sessions() as session:
        account = await store.staff_by_email(session, "fiona.finance@partnership.example.org")
    assert account is not None and account.last_sign_in_at is not None


async def test_wrong_passwords_a_week_old_are_forgotten(accounts: Accounts) -> None:
    clock: Clock = accounts.clock  # type: ignore[assignment]
    await accounts.sign_in("nobody@partnership.example.org", "a guess", address=None)
    clock.now += timedelta(days=6)
    await accounts.sign_in("someone@partnership.example.org", "a guess", address=None)
    clock.now += timedelta(days=2)
    assert (
        await accounts.sign_in("fiona.finance@partnership.example.org", PASSWORD, address=None)
    ).token
    async with accounts.sessions() as session:
        kept = list(await session.scalars(select(store.SignInFailures.login)))
    assert kept == ["someone@partnership.example.org"]
