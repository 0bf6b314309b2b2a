"""Vestry's messages: the only thing the services share about each other.

Every message is a frozen Pydantic model registered with its type, version
and subject. Importing this package registers them all.
"""

from contracts import (
    audit_v1,
    events_v1,
    notifications_v1,
    people_v1,
    subscriptions_v1,
    system_v1,
)
from contracts.envelope import Envelope, Message, new_message_id
from contracts.registry import REGISTRY, MessageSpec, Registry, UnknownMessage

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
