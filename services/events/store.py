"""The events store: its read model of memberships (built from subscriptions' facts)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Date, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kernel.store import upsert


class Base(DeclarativeBase):
    pass


class MembershipView(Base):
    """What events knows of a membership: enough to price a booking."""

    __tablename__ = "membership_view"

    membership_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36), index=True)
    member_name: Mapped[str] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(40))
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)


async def record_membership(session: AsyncSession, **values: object) -> None:
    """Add the membership to the read model, or bring it up to date."""
    await upsert(session, MembershipView.__table__, values, key=["membership_id"])


async def memberships(session: AsyncSession) -> list[MembershipView]:
    return list(await session.scalars(select(MembershipView).order_by(MembershipView.member_name)))
