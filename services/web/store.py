"""The web service's own store: staff accounts, their sessions, and failed sign-ins.

Nothing else lives here: the door keeps no business data. Passwords are kept only as
Argon2id hashes; a session is kept only as the SHA-256 digest of the random token in
its cookie, so a copy of this store signs nobody in. Failed sign-ins are counted by the
address typed, whether or not an account has it, so the lockout says nothing about
which addresses have accounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Integer,
    String,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kernel.store import UTCDateTime, dialect_insert


class Base(DeclarativeBase):
    pass


class StaffAccount(Base):
    """A member of the partnership's staff who may sign in to the back office."""

    __tablename__ = "staff"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # lower case: the login
    name: Mapped[str] = mapped_column(String(200))
    roles: Mapped[str] = mapped_column(String(200))  # space separated, sorted
    password_hash: Mapped[str] = mapped_column(String(200))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    @property
    def role_set(self) -> frozenset[str]:
        return frozenset(self.roles.split())


class StaffSession(Base):
    """A signed-in browser: the digest of its cookie's token, and when it lapses."""

    __tablename__ = "staff_sessions"

    token_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    staff_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("staff.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    address: Mapped[str | None] = mapped_column(String(100), nullable=True)


class SignInFailures(Base):
    """Wrong passwords in a row for one typed address, and until when it is locked."""

    __tablename__ = "sign_in_failures"

    login: Mapped[str] = mapped_column(String(320), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


# Staff accounts


async def staff_by_email(session: AsyncSession, email: str) -> StaffAccount | None:
    """The account signed in with ``email`` (any case), if there is one."""
    return await session.scalar(select(StaffAccount).where(StaffAccount.email == email.lower()))


async def staff_by_ref(session: AsyncSession, ref: str) -> StaffAccount | None:
    """The account with this id or email address."""
    found = await session.get(StaffAccount, ref)
    return found or await staff_by_email(session, ref)


async def all_staff(session: AsyncSession) -> list[StaffAccount]:
    """Every account, by email."""
    return list(await session.scalars(select(StaffAccount).order_by(StaffAccount.email)))


# Sessions


@dataclass(frozen=True)
class SignedIn:
    """A live session and the account it belongs to."""

    session: StaffSession
    staff: StaffAccount


async def signed_in(session: AsyncSession, token_digest: str) -> SignedIn | None:
    """The session with this digest and its enabled account; None if there is none."""
    row = (
        await session.execute(
            select(StaffSession, StaffAccount)
            .join(StaffAccount, StaffAccount.id == StaffSession.staff_id)
            .where(StaffSession.token_digest == token_digest, StaffAccount.disabled.is_(False))
        )
    ).first()
    return SignedIn(row[0], row[1]) if row else None


async def touch_session(session: AsyncSession, token_digest: str, now: datetime) -> None:
    await session.execute(
        update(StaffSession)
        .where(StaffSession.token_digest == token_digest)
        .values(last_seen_at=now)
    )


async def end_session(session: AsyncSession, token_digest: str) -> None:
    await session.execute(delete(StaffSession).where(StaffSession.token_digest == token_digest))


async def end_sessions_of(session: AsyncSession, staff_id: str) -> int:
    """Sign ``staff_id`` out everywhere; how many sessions ended."""
    result = await session.execute(delete(StaffSession).where(StaffSession.staff_id == staff_id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def end_lapsed_sessions(session: AsyncSession, now: datetime) -> None:
    """Forget sessions past their absolute lifetime (idle ones go when next presented)."""
    await session.execute(delete(StaffSession).where(StaffSession.expires_at <= now))


async def session_counts(session: AsyncSession, now: datetime) -> dict[str, int]:
    """Live sessions per staff id."""
    rows = await session.execute(
        select(StaffSession.staff_id, func.count())
        .where(StaffSession.expires_at > now)
        .group_by(StaffSession.staff_id)
    )
    return {staff_id: int(count) for staff_id, count in rows}


# Failed sign-ins


async def failures_of(session: AsyncSession, login: str) -> SignInFailures | None:
    return await session.get(SignInFailures, login)


async def count_failure(session: AsyncSession, login: str, now: datetime) -> int:
    """One more wrong password for ``login``; the count in a row, raised atomically."""
    table = SignInFailures.__table__
    statement = dialect_insert(session)(table).values(login=login, failures=1, last_failed_at=now)
    statement = statement.on_conflict_do_update(
        index_elements=["login"],
        set_={"failures": table.c.failures + 1, "last_failed_at": now},
    ).returning(table.c.failures)
    return int((await session.execute(statement)).scalar_one())


async def lock(session: AsyncSession, login: str, until: datetime) -> None:
    await session.execute(
        update(SignInFailures).where(SignInFailures.login == login).values(locked_until=until)
    )


async def clear_failures(session: AsyncSession, login: str) -> None:
    await session.execute(delete(SignInFailures).where(SignInFailures.login == login))


async def forget_failures_before(session: AsyncSession, before: datetime) -> None:
    """Forget wrong passwords last tried before ``before`` whose lock, if any, has ended."""
    await session.execute(
        delete(SignInFailures).where(
            SignInFailures.last_failed_at < before,
            (SignInFailures.locked_until.is_(None)) | (SignInFailures.locked_until < before),
        )
    )
