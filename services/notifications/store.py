"""The notifications store: contacts and the delivery ledger."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, Integer, String, Text, UniqueConstraint, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.notifications.domain import PlannedDelivery


class Base(DeclarativeBase):
    pass


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    organisation: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(40))


class Delivery(Base):
    """The ledger: one row per cause × recipient × channel, created once and sent once."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("cause_id", "recipient", "channel", name="uq_delivery_once"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    cause_id: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(320))
    channel: Mapped[str] = mapped_column(String(10))
    template: Mapped[str] = mapped_column(String(60))
    context: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def template_context(self) -> dict[str, Any]:
        return dict(json.loads(self.context))


async def remember_contact(
    session: AsyncSession, *, email: str, name: str | None, organisation: str | None, source: str
) -> None:
    existing = await session.scalar(select(Contact).where(Contact.email == email))
    if existing is None:
        session.add(
            Contact(
                id=str(uuid.uuid4()),
                email=email,
                name=name,
                organisation=organisation,
                source=source,
            )
        )
    elif organisation and not existing.organisation:
        existing.organisation = organisation


async def plan_delivery(session: AsyncSession, cause_id: str, planned: PlannedDelivery) -> bool:
    """Add the ledger row unless this cause already has one for this recipient and channel."""
    existing = await session.scalar(
        select(Delivery.id).where(
            Delivery.cause_id == cause_id,
            Delivery.recipient == planned.recipient,
            Delivery.channel == planned.channel,
        )
    )
    if existing is not None:
        return False
    now = datetime.now(UTC)
    session.add(
        Delivery(
            id=str(uuid.uuid4()),
            cause_id=cause_id,
            recipient=planned.recipient,
            channel=planned.channel,
            template=planned.template,
            context=json.dumps(planned.context),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
    await session.flush()
    return True


async def due_deliveries(session: AsyncSession, limit: int = 50) -> list[Delivery]:
    return list(
        await session.scalars(
            select(Delivery)
            .where(Delivery.status == "pending", Delivery.next_attempt_at <= datetime.now(UTC))
            .order_by(Delivery.created_at)
            .limit(limit)
        )
    )


async def claim_delivery(session: AsyncSession, delivery: Delivery, *, lease: timedelta) -> bool:
    """Take ``delivery`` for sending until ``lease`` from now; False if someone else has it."""
    now = datetime.now(UTC)
    claimed = await session.execute(
        update(Delivery)
        .where(
            Delivery.id == delivery.id,
            Delivery.status == "pending",
            Delivery.next_attempt_at == delivery.next_attempt_at,
        )
        .values(next_attempt_at=now + lease)
        .execution_options(synchronize_session=False)
    )
    return claimed.rowcount == 1  # type: ignore[attr-defined]


async def count_deliveries(session: AsyncSession, status: str | None = None) -> int:
    query = select(func.count()).select_from(Delivery)
    if status:
        query = query.where(Delivery.status == status)
    return await session.scalar(query) or 0
