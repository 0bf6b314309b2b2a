"""The broadcast commands, and completing a broadcast once its last row is settled."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from contracts.envelope import derived_message_id
from contracts.notifications_v1 import (
    BroadcastStatus,
    SendBroadcast,
)
from kernel.commands import CommandContext, Refused
from kernel.settings import Settings
from services.notifications import domain, store
from services.notifications.handlers.completion import complete_broadcast
from services.notifications.handlers.contacts import known_topics
from services.notifications.segments import count_segments
from services.notifications.sms import prepared_text
from services.notifications.templates import TemplateProblem, Templates


class Broadcasts:
    """The broadcast commands, with the templates and settings they render and sign with."""

    def __init__(self, settings: Settings, templates: Templates) -> None:
        self._settings = settings
        self._templates = templates

    def check(self, command: SendBroadcast) -> None:
        """Refuse, before anything is planned, a message that could not be rendered."""
        try:
            self._templates.check(command.template, list(command.channels))
            text = ""
            probe = {
                **command.data,
                "recipient_name": "",
                "topic": command.topic,
                "unsubscribe_url": "https://example.invalid/unsubscribe",
            }
            for channel in command.channels:
                if channel == "email":
                    self._templates.email(command.template, probe)
                else:
                    text = self._templates.sms(command.template, probe)
        except TemplateProblem as problem:
            raise Refused(problem.code, str(problem), problem.field) from None
        if "sms" in command.channels:
            # Counted as the provider sends it (Notify's replacements first, for notify).
            segments = count_segments(prepared_text(self._settings.sms_provider, text)).segments
            limit = self._settings.sms_segment_limit
            if segments > limit:
                raise Refused(
                    "invalid",
                    f"with this data the SMS takes {segments} parts; the limit is {limit}: "
                    "shorten the values, or send by email only",
                    "data",
                )

    async def send(self, command: SendBroadcast, ctx: CommandContext) -> dict[str, Any]:
        """Plan one delivery per consenting subscriber and channel, in this transaction.

        The message's data is stored once, with the broadcast; each delivery holds
        only what is its recipient's own.
        """
        known_topics([command.topic])
        self.check(command)
        broadcast_id = derived_message_id("broadcast", ctx.envelope.id)
        existing = await ctx.session.get(store.Broadcast, broadcast_id)
        if existing is not None:  # the same command again: answer the first
            return _broadcast_answer(existing)
        settings = self._settings
        fan = domain.fan_out(
            await store.subscribers(ctx.session, command.topic),
            topic=command.topic,
            channels=list(dict.fromkeys(command.channels)),
            template=command.template,
            data=command.data,
            urgent=command.urgent,
            unsubscribe=lambda contact_id: domain.unsubscribe_url(
                settings.public_url, settings.unsubscribe_secret, contact_id, command.topic
            ),
        )
        broadcast = await store.add_broadcast(
            ctx.session,
            {
                "id": broadcast_id,
                "topic": command.topic,
                "template": command.template,
                "channels": ",".join(dict.fromkeys(command.channels)),
                "urgent": command.urgent,
                "recipients": fan.recipients,
                "planned": len(fan.planned),
                "skipped_for_consent": fan.skipped_for_consent,
                "created_at": datetime.now(UTC),
                "context": json.dumps(fan.shared),
            },
        )
        if broadcast is None:  # another replica planned this very command meanwhile
            planned = await store.broadcast(ctx.session, broadcast_id)
            assert planned is not None
            return _broadcast_answer(planned)
        await store.plan_broadcast(ctx.session, broadcast_id, fan.planned)
        await ctx.record_action(
            "send_broadcast",
            target=command.topic,
            filters={
                "template": command.template,
                "channels": list(dict.fromkeys(command.channels)),
                "urgent": command.urgent,
            },
            result={
                "broadcast_id": broadcast_id,
                "recipients": fan.recipients,
                "planned": len(fan.planned),
            },
        )
        if not fan.planned:  # nobody to wait for: it is complete now
            await complete_broadcast(ctx.session, broadcast, ctx.publish, {"sent": 0, "failed": 0})
        return _broadcast_answer(broadcast)

    async def status(self, command: BroadcastStatus, ctx: CommandContext) -> dict[str, Any]:
        broadcast = await ctx.session.get(store.Broadcast, command.broadcast_id)
        if broadcast is None:
            raise Refused(
                "not_found", f"there is no broadcast {command.broadcast_id}", "broadcast_id"
            )
        counts = await store.broadcast_counts(ctx.session, broadcast.id)
        return {**_broadcast_answer(broadcast), **counts}


def _broadcast_answer(broadcast: store.Broadcast) -> dict[str, Any]:
    return {
        "broadcast_id": broadcast.id,
        "topic": broadcast.topic,
        "template": broadcast.template,
        "channels": broadcast.channels.split(","),
        "recipients": broadcast.recipients,
        "planned": broadcast.planned,
        "skipped_for_consent": broadcast.skipped_for_consent,
        "completed": broadcast.completed_at is not None,
    }
