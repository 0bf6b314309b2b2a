"""Rendering a delivery with Jinja2 and handing it to an SMTP server with aiosmtplib."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

import aiosmtplib
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from kernel.settings import Settings
from services.notifications.store import Delivery

TEMPLATES = Path(__file__).parent / "templates"


class Mailer:
    def __init__(self, settings: Settings, templates: Path = TEMPLATES) -> None:
        self._settings = settings
        self._env = Environment(
            loader=FileSystemLoader(templates),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        )

    def compose(self, delivery: Delivery) -> EmailMessage:
        """A multipart (text and HTML) email; its Message-ID is fixed by the ledger row."""
        context = delivery.template_context
        message = EmailMessage()
        message["Subject"] = self._render(f"{delivery.template}.subject.j2", context).strip()
        message["From"] = self._settings.mail_from
        message["To"] = delivery.recipient
        if self._settings.mail_reply_to:
            message["Reply-To"] = self._settings.mail_reply_to
        message["Date"] = formatdate(localtime=False)
        # A resend after a crash carries the same Message-ID, so mail systems can drop the copy.
        message["Message-ID"] = f"<{delivery.id}@vestry.invalid>"
        message["X-Vestry-Delivery"] = delivery.id
        message.set_content(self._render(f"{delivery.template}.txt.j2", context))
        message.add_alternative(
            self._render(f"{delivery.template}.html.j2", context), subtype="html"
        )
        return message

    async def send(self, message: EmailMessage) -> None:
        settings = self._settings
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            start_tls=settings.smtp_starttls,
            use_tls=settings.smtp_tls,
            username=settings.smtp_username,
            password=settings.smtp_password,
            timeout=30,
        )

    def _render(self, name: str, context: dict[str, object]) -> str:
        return self._env.get_template(name).render(**context)
