"""The events service as a FastStream app."""

from __future__ import annotations

from pathlib import Path

from contracts.subscriptions_v1 import MembershipStarted
from kernel.runtime import Service
from kernel.settings import Settings
from services.events import NAME, handlers

MIGRATIONS = Path(__file__).parent / "migrations"


def create_service(settings: Settings | None = None) -> Service:
    service = Service(NAME, migrations_dir=MIGRATIONS, settings=settings)
    service.consume(MembershipStarted)(handlers.on_membership_started)
    return service
