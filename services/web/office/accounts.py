"""Staff accounts: roles, Argon2id passwords, sessions and the sign-in lockout.

The rules here are the web service's own (it owns staff accounts and nothing else):

- A password is kept only as an Argon2id hash (argon2-cffi's RFC 9106 low-memory
  profile); hashing runs in a worker thread, at most two at once, so a burst of
  sign-ins neither stalls the pages nor takes a gigabyte of memory.
- A session is a random 256-bit token in a cookie; the store keeps its SHA-256 digest.
  It ends when unused for the idle timeout, at its absolute lifetime, at sign-out,
  at sign-out everywhere, or when the account is disabled or its password reset.
- Wrong passwords are counted per address typed (known or not). The tenth in a row
  locks the address for 15 minutes and each further one doubles the lock, up to a
  day; a right password clears the count. While locked, even the right password is
  refused, without being checked.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts.envelope import Actor
from services.web import store
from services.web.settings import WebSettings

LONGEST_LOCK = timedelta(days=1)
# Wrong passwords a week old, with no lock running, are forgotten (so the table does not
# keep every address anyone ever typed); the next lock then starts short again.
FORGET_FAILURES_AFTER = timedelta(days=7)
SESSION_COOKIE = "vestry_staff"
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
# Writing last_seen_at on every request would make each page a write; a minute's
# slack on a 30-minute idle timeout is nothing (shorter timeouts get a quarter of theirs).
TOUCH_EVERY = timedelta(seconds=60)


def now_utc() -> datetime:
    return datetime.now(UTC)


def lock_for(failures: int, *, after: int, first: timedelta) -> timedelta | None:
    """How long ``failures`` wrong passwords in a row lock an address; None below ``after``."""
    if failures < after:
        return None
    return min(first * 2 ** min(failures - after, 20), LONGEST_LOCK)


def new_token() -> tuple[str, str]:
    """A fresh session token for the cookie, and the digest the store keeps."""
    token = secrets.token_urlsafe(32)
    return token, token_digest(token)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sorted_roles(roles: set[str] | frozenset[str] | list[str]) -> str:
    return " ".join(sorted(set(roles)))


class Passwords:
    """Argon2id hashing and checking, off the event loop."""

    def __init__(self, concurrency: int = 2) -> None:
        self._hasher = PasswordHasher()
        self._slots = asyncio.Semaphore(concurrency)
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, hashed: str | None, password: str) -> bool:
        """Whether ``password`` matches; an unknown account costs the same time as a known one."""
        if hashed is None:
            if self._dummy is None:
                self._dummy = await self.hash(secrets.token_urlsafe(16))
            hashed = self._dummy
            password = password + "\x00"  # never matches the dummy
        async with self._slots:
            try:
                return await asyncio.to_thread(self._hasher.verify, hashed, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

    def needs_rehash(self, hashed: str) -> bool:
        return self._hasher.check_needs_rehash(hashed)


@dataclass(frozen=True)
class StaffMember:
    """Who is signed in on this request, as the store said a moment ago."""

    id: str
    email: str
    name: str
    roles: frozenset[str]
    token_digest: str

    def actor(self, address: str | None) -> Actor:
        """The staff member as the commands they cause name them."""
        return Actor(id=self.id, name=self.name, address=address)


@dataclass(frozen=True)
class SignInOutcome:
    """A sign-in's result: a token and who it is, or a refusal (locked until when, or not)."""

    token: str | None = None
    staff: StaffMember | None = None
    locked_until: datetime | None = None


class Accounts:
    """Staff sign-in, sessions and lockout, over the web service's own store."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        web: WebSettings,
        passwords: Passwords | None = None,
        *,
        clock=now_utc,  # type: ignore[no-untyped-def]
    ) -> None:
        self.sessions = sessions
        self.passwords = passwords or Passwords()
        self.idle = timedelta(minutes=web.staff_idle_timeout_min)
        self.lifetime = timedelta(hours=web.staff_session_hours)
        self.lockout_after = web.lockout_after
        self.first_lock = timedelta(minutes=web.lockout_minutes)
        self.clock = clock

    async def sign_in(self, email: str, password: str, *, address: str | None) -> SignInOutcome:
        """A new session for the right password of an enabled account; a refusal otherwise."""
        login = email.strip().lower()
        now = self.clock()
        async with self.sessions() as session, session.begin():
            failures = await store.failures_of(session, login)
            if failures and failures.locked_until and failures.locked_until > now:
                return SignInOutcome(locked_until=failures.locked_until)
            account = await store.staff_by_email(session, login)
            hashed = account.password_hash if account else None
            usable = account is not None and not account.disabled
        # Checked outside any transaction: Argon2 takes a tenth of a second.
        right = await self.passwords.verify(hashed, password)
        if not (right and usable):
            async with self.sessions() as session, session.begin():
                count = await store.count_failure(session, login, now)
                wait = lock_for(count, after=self.lockout_after, first=self.first_lock)
                if wait is not None:
                    await store.lock(session, login, now + wait)
            return SignInOutcome(locked_until=now + wait if wait is not None else None)
        rehashed = (
            await self.passwords.hash(password)
            if self.passwords.needs_rehash(hashed or "")
            else None
        )
        token, digest = new_token()
        async with self.sessions() as session, session.begin():
            account = await store.staff_by_email(session, login)
            if account is None or account.disabled or account.password_hash != hashed:
                return SignInOutcome()  # disabled or reset while the password was checked
            await store.clear_failures(session, login)
            await store.end_lapsed_sessions(session, now)
            await store.forget_failures_before(session, now - FORGET_FAILURES_AFTER)
            session.add(
                store.StaffSession(
                    token_digest=digest,
                    staff_id=account.id,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + self.lifetime,
                    address=(address or "")[:100] or None,
                )
            )
            account.last_sign_in_at = now
            if rehashed:
                account.password_hash = rehashed
            member = _member(account, digest)
        return SignInOutcome(token=token, staff=member)

    async def identify(self, token: str | None) -> StaffMember | None:
        """Who holds the session ``token`` names, if it is live; a lapsed one ends here."""
        if not token or not TOKEN_SHAPE.fullmatch(token):
            return None
        digest = token_digest(token)
        now = self.clock()
        async with self.sessions() as session, session.begin():
            found = await store.signed_in(session, digest)
            if found is None:
                return None
            if found.session.expires_at <= now or now - found.session.last_seen_at > self.idle:
                await store.end_session(session, digest)
                return None
            if now - found.session.last_seen_at >= min(TOUCH_EVERY, self.idle / 4):
                await store.touch_session(session, digest, now)
            return _member(found.staff, digest)

    async def sign_out(self, staff: StaffMember) -> None:
        async with self.sessions() as session, session.begin():
            await store.end_session(session, staff.token_digest)

    async def sign_out_everywhere(self, staff: StaffMember) -> int:
        async with self.sessions() as session, session.begin():
            return await store.end_sessions_of(session, staff.id)

    def new_account(
        self, *, email: str, name: str, roles: list[str], password_hash: str
    ) -> store.StaffAccount:
        now = self.clock()
        return store.StaffAccount(
            id=str(uuid.uuid4()),
            email=email.strip().lower(),
            name=name.strip(),
            roles=sorted_roles(roles),
            password_hash=password_hash,
            disabled=False,
            created_at=now,
            updated_at=now,
        )


def _member(account: store.StaffAccount, digest: str) -> StaffMember:
    return StaffMember(
        id=account.id,
        email=account.email,
        name=account.name,
        roles=account.role_set,
        token_digest=digest,
    )
