"""The audit stream (OPS) as the CLI writes it: an ``ActionRecorded`` for what the CLI
does itself (`vestry dlq purge`, `vestry people forget`). What the services carry out
(replay, redrive, rebuild and every command) they record themselves."""

from __future__ import annotations

from typing import Any

from nats.js import JetStreamContext

from contracts import Envelope
from contracts.audit_v1 import ActionBy
from kernel import audit
from kernel.settings import Settings
from kernel.streams import OPS_STREAM, STREAMS

__all__ = ["OPS_STREAM", "OPS_SUBJECTS", "record"]

OPS_SUBJECTS = [subject for spec in STREAMS if spec.name == OPS_STREAM for subject in spec.subjects]
SERVICE = "cli"


async def record(
    js: JetStreamContext,
    action: str,
    *,
    url: str,
    target: str | None = None,
    filters: dict[str, Any] | None = None,
    result: dict[str, Any] | None = None,
    dry_run: bool = False,
) -> Envelope:
    """Store ``action`` in OPS as done by the NATS user of ``url`` ("development" without
    users); raises if JetStream does not confirm it."""
    settings = Settings()
    user = audit.nats_user_of_url(url, settings.nats_inbox_prefix)
    envelope = Envelope.wrap(
        audit.action_recorded(
            action,
            service=SERVICE,
            by=ActionBy(kind="nats_user", name=user, nats_user=user),
            target=target,
            filters=filters,
            result=result,
            dry_run=dry_run,
        )
    )
    await audit.publish(
        js,
        [envelope],
        duplicate_window_s=settings.duplicate_window_s,
        replicas=settings.stream_replicas,
    )
    return envelope
