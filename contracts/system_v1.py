"""What every service answers, whatever it owns: health, and the reply shape of commands."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SERVICES = ("subscriptions", "events", "notifications")


def health_subject(service: str) -> str:
    """Request subject a service answers with its ``HealthReport``."""
    return f"{service}.cmd.health"


class CommandError(BaseModel):
    """Why a command was refused. Nothing was changed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(
        description="Machine-readable reason: invalid, conflict, not_found, busy, …",
        examples=["invalid"],
    )
    message: str = Field(description="What went wrong, in words a person can act on.")
    field: str | None = Field(default=None, description="The input field at fault, if one is.")


class Reply(BaseModel):
    """Every command's answer: ``ok`` with ``data``, or not ok with ``error``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    data: dict[str, Any] | None = None
    error: CommandError | None = None


class ConsumerLag(BaseModel):
    model_config = ConfigDict(frozen=True)

    stream: str
    consumer: str
    pending: int = Field(description="Messages not yet delivered to the consumer.")
    ack_pending: int = Field(description="Messages delivered but not yet acknowledged.")
    redelivered: int = Field(description="Messages delivered more than once so far.")


class HealthReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    service: str
    version: str
    pid: int
    store: str = Field(description="The store's URL, without credentials.")
    outbox_unsent: int = Field(description="Facts written but not yet in JetStream.")
    consumers: list[ConsumerLag]
