"""Composing a delivery as a multipart email and handing it to an SMTP server with aiosmtplib."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiosmtplib

from kernel.settings import Settings
from services.notifications.calendar import calendar_attachment
from services.notifications.failures import PermanentFailure, TransientFailure
from services.notifications.store import Delivery
from services.notifications.templates import TemplateProblem, Templates

# Messages whose calendar entry is attached, and those that remove it.
CALENDAR_ATTACHED = {"booking_confirmed", "booking_promoted", "event_changed", "reminder"}
CALENDAR_CANCELLED = {"booking_cancelled", "event_cancelled"}


class Mailer:
    def __init__(self, settings: Settings, templates: Path | None = None) -> None:
        self._settings = settings
        self.templates = Templates(
            templates or settings.templates_dir, partnership=settings.partnership_name
        )

    def compose(self, delivery: Delivery) -> EmailMessage:
        """A multipart (text and HTML, and attachments) email; its Message-ID is fixed by the ledger row."""
        context = delivery.template_context
        try:
            rendered = self.templates.email(delivery.template, context)
        except TemplateProblem as problem:
            raise PermanentFailure(str(problem)) from None
        message = EmailMessage()
        message["Subject"] = rendered.subject
        message["From"] = self._settings.mail_from
        message["To"] = delivery.recipient
        if self._settings.mail_reply_to:
            message["Reply-To"] = self._settings.mail_reply_to
        message["Date"] = formatdate(localtime=False)
        # A resend after a crash carries the same Message-ID, so mail systems can drop the copy.
        message["Message-ID"] = f"<{delivery.id}@vestry.invalid>"
        message["X-Vestry-Delivery"] = delivery.id
        if "unsubscribe_url" in context:  # a broadcast: one-click unsubscribe (RFC 8058)
            message["List-Unsubscribe"] = f"<{context['unsubscribe_url']}>"
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(rendered.text)
        message.add_alternative(rendered.html, subtype="html")
        self._attach(message, delivery.template, context)
        return message

    def _attach(self, message: EmailMessage, template: str, context: dict[str, Any]) -> None:
        calendar = context.get("calendar")
        if calendar and template in CALENDAR_ATTACHED | CALENDAR_CANCELLED:
            cancel = template in CALENDAR_CANCELLED
            message.add_attachment(
                calendar_attachment(calendar, cancel=cancel),
                maintype="text",
                subtype="calendar",
                filename="cancelled.ics" if cancel else "event.ics",
                params={"method": "CANCEL" if cancel else "REQUEST"},
            )
        if template == "invoice_issued":
            document = self.templates.render("invoice_document.html.j2", context)
            message.add_attachment(document, subtype="html", filename=f"{context['number']}.html")

    async def send(self, message: EmailMessage) -> None:
        """Hand ``message`` over; raises TransientFailure or PermanentFailure when refused."""
        settings = self._settings
        try:
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
        except aiosmtplib.SMTPRecipientsRefused as refused:
            codes = [recipient.code for recipient in refused.recipients]
            raise _by_code(min(codes), f"SMTPRecipientsRefused: {refused}") from None
        except aiosmtplib.SMTPResponseException as error:
            raise _by_code(error.code, f"{type(error).__name__}: {error}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            # Could not connect, timed out, disconnected: the server may be back later.
            raise TransientFailure(f"{type(error).__name__}: {error}") from None


def _by_code(code: int, text: str) -> Exception:
    """SMTP 5xx is permanent (RFC 5321); 4xx, and anything odd, is worth another try."""
    if 500 <= code < 600:
        return PermanentFailure(text)
    return TransientFailure(text)
