"""Vestry's messages: the only thing the services share about each other.

Every message is a frozen Pydantic model registered with its type, version
and subject. The registry imports every message module before its first lookup;
a module of messages is imported on first use (``contracts.events_v1``), so that a
program that needs one (``vestry status``: ``system_v1``) loads no more.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from contracts.envelope import Envelope, Message, new_message_id
from contracts.registry import REGISTRY, MessageSpec, Registry, UnknownMessage

MODULES = (
    "audit_v1",
    "events_v1",
    "notifications_v1",
    "people_v1",
    "subscriptions_v1",
    "system_v1",
)


def _import_all() -> None:
    for name in MODULES:
        importlib.import_module(f"contracts.{name}")


REGISTRY.load_with(_import_all)


def __getattr__(name: str) -> ModuleType:
    if name in MODULES:
        return importlib.import_module(f"contracts.{name}")
    raise AttributeError(f"module 'contracts' has no attribute {name!r}")


__all__ = [
    "REGISTRY",
    "Envelope",
    "Message",
    "MessageSpec",
    "Registry",
    "UnknownMessage",
    "audit_v1",
    "events_v1",
    "new_message_id",
    "notifications_v1",
    "people_v1",
    "subscriptions_v1",
    "system_v1",
]
