"""The notifications service as a FastStream app."""

from __future__ import annotations

from pathlib import Path

from contracts.subscriptions_v1 import MembershipStarted
from kernel.runtime import Service
from kernel.settings import Settings
from services.notifications import NAME, handlers
from services.notifications.sender import run_sender

MIGRATIONS = Path(__file__).parent / "migrations"


def create_service(settings: Settings | None = None) -> Service:
    service = Service(NAME, migrations_dir=MIGRATIONS, settings=settings)
    service.consume(MembershipStarted)(handlers.on_membership_started)
    service.worker(run_sender)
    return service
