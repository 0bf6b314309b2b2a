"""PreviewBroadcast: a broadcast rendered as it would go, counted as the gateway counts
its SMS, and the people it would reach, before anything is planned."""

from __future__ import annotations

from typing import Any

from contracts.notifications_v1 import PreviewBroadcast
from kernel.commands import CommandContext, Refused
from kernel.settings import Settings
from services.notifications import domain, store
from services.notifications.catalogue import MESSAGE_TYPES
from services.notifications.handlers.contacts import known_topics
from services.notifications.segments import count_segments
from services.notifications.sms import prepared_text
from services.notifications.templates import TemplateProblem, Templates

# What the service itself puts in every broadcast's context (``fan_out``, ``check``):
# the composer is never asked for these.
FILLED_IN = frozenset({"recipient_name", "topic", "unsubscribe_url"})


class Previews:
    """The preview command, with the templates and settings a broadcast is rendered with."""

    def __init__(self, settings: Settings, templates: Templates) -> None:
        self._settings = settings
        self._templates = templates

    def broadcast_templates(self) -> list[dict[str, Any]]:
        """Every template a broadcast may use: the shipped ones marked for broadcasts, and
        any the operator added; with its channels and the values it needs."""
        found = []
        for name, channels in self._templates.names().items():
            known = MESSAGE_TYPES.get(name)
            if known is not None and not known.broadcast:
                continue
            found.append(
                {
                    "template": name,
                    "description": known.description if known else "The operator's own template.",
                    "channels": channels,
                    "needs": sorted(self._templates.variables(name) - FILLED_IN),
                }
            )
        return found

    async def preview(self, command: PreviewBroadcast, ctx: CommandContext) -> dict[str, Any]:
        """Render the email and the SMS as SendBroadcast would, and count its reach."""
        templates = {t["template"]: t for t in self.broadcast_templates()}
        if command.template not in templates:
            raise Refused(
                "not_found",
                f"there is no broadcast template {command.template!r}; the templates are "
                f"{', '.join(templates)}",
                "template",
            )
        if command.topic:
            known_topics([command.topic])
        channels = list(dict.fromkeys(command.channels)) or templates[command.template]["channels"]
        context = {
            **command.data,
            "recipient_name": "",
            "topic": command.topic or "",
            "unsubscribe_url": f"{self._settings.public_url.rstrip('/')}/unsubscribe",
        }
        email = sms = None
        try:
            self._templates.check(command.template, channels)
            if "email" in channels:
                rendered = self._templates.email(command.template, context)
                email = {"subject": rendered.subject, "text": rendered.text, "html": rendered.html}
            if "sms" in channels:
                text = self._templates.sms(command.template, context)
                # Counted as the provider sends it (Notify's replacements first, for notify).
                counted = count_segments(prepared_text(self._settings.sms_provider, text))
                limit = self._settings.sms_segment_limit
                sms = {
                    "text": text,
                    "encoding": counted.encoding,
                    "units": counted.units,
                    "segments": counted.segments,
                    "limit": limit,
                    "within_limit": counted.segments <= limit,
                }
        except TemplateProblem as problem:
            raise Refused(problem.code, str(problem), problem.field) from None
        return {
            "template": command.template,
            "topic": command.topic,
            "channels": channels,
            "email": email,
            "sms": sms,
            "reach": await self.reach(ctx, command.topic) if command.topic else None,
            "templates": list(templates.values()),
        }

    async def reach(self, ctx: CommandContext, topic: str) -> dict[str, int]:
        """The topic's subscribers, and how many a broadcast would reach on each channel:
        the deliveries ``fan_out`` would plan, consent and addresses as it sees them."""
        fan = domain.fan_out(
            await store.subscribers(ctx.session, topic),
            topic=topic,
            channels=["email", "sms"],
            template="",
            data={},
            urgent=False,
        )
        return {
            "subscribers": fan.recipients,
            "email": sum(1 for planned in fan.planned if planned.channel == "email"),
            "sms": sum(1 for planned in fan.planned if planned.channel == "sms"),
        }
