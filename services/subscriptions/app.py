"""The subscriptions service as a FastStream app: commands in, facts out."""

from __future__ import annotations

from pathlib import Path

from contracts.subscriptions_v1 import JoinMember
from kernel.runtime import Service
from kernel.settings import Settings
from services.subscriptions import NAME, handlers

MIGRATIONS = Path(__file__).parent / "migrations"


def create_service(settings: Settings | None = None) -> Service:
    service = Service(NAME, migrations_dir=MIGRATIONS, settings=settings)
    service.command(JoinMember)(handlers.join_member)
    return service
