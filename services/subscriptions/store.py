"""The subscriptions store: members and memberships."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, DateTime, ForeignKey, String, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.subscriptions.domain import NewMembership


class Base(DeclarativeBase):
    pass


class Member(Base):
    __tablename__ = "members"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    name_key: Mapped[str] = mapped_column(String(200), unique=True)
    reference: Mapped[str | None] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Membership(Base):
    __tablename__ = "memberships"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("members.id"))
    tier: Mapped[str] = mapped_column(String(40))
    billing_email: Mapped[str] = mapped_column(String(320))
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)


def name_key(name: str) -> str:
    """Names are unique whatever their case and spacing."""
    return " ".join(name.casefold().split())


async def name_taken(session: AsyncSession, name: str) -> bool:
    return (
        await session.scalar(select(Member.id).where(Member.name_key == name_key(name))) is not None
    )


async def add_membership(session: AsyncSession, new: NewMembership, reference: str | None) -> None:
    session.add(
        Member(id=new.member_id, name=new.name, name_key=name_key(new.name), reference=reference)
    )
    session.add(
        Membership(
            id=new.membership_id,
            member_id=new.member_id,
            tier=new.tier,
            billing_email=new.billing_email,
            starts_on=new.starts_on,
        )
    )
    await session.flush()


async def count_members(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(Member)) or 0
