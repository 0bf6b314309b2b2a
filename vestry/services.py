"""Where each service's code lives, for the commands that act on them by name."""

from __future__ import annotations

from pathlib import Path

from contracts.system_v1 import SERVICES

_ROOT = Path(__file__).resolve().parent.parent / "services"


def service_names() -> list[str]:
    return list(SERVICES)


def migrations_dir(service: str) -> Path:
    return _ROOT / service / "migrations"
