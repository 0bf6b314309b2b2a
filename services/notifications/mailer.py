"""Composing a delivery as a multipart email and handing it to an SMTP server with aiosmtplib."""

from __future__ import annotations

import email.policy
from collections.abc import Sequence
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.utils import formataddr, formatdate, getaddresses, parseaddr
from pathlib import Path
from typing import Any

import aiosmtplib

from contracts.calendar import invitation_uid
from kernel.settings import Settings
from services.notifications.calendar import (
    Party,
    calendar_attachment,
    organizer_of,
)
from services.notifications.documents import Document
from services.notifications.failures import PermanentFailure, TransientFailure
from services.notifications.mime import Attachment, PlainMail, plain_mail
from services.notifications.store import Delivery
from services.notifications.templates import RenderedEmail, TemplateProblem, templates_for


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, but building each header's class once, not per header.

    ``HeaderRegistry`` makes a new class every time a header is set; for a
    broadcast to thousands that is most of the cost of composing a message.
    """

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        if key not in self._made:
            self._made[key] = super().__getitem__(name)
        return self._made[key]


# Header lines may run to 998 characters (RFC 5322). At the default 78, a
# List-Unsubscribe URL longer than a line would be folded into an RFC 2047
# encoded word, which mail clients do not decode there, and the link breaks.
POLICY = email.policy.default.clone(header_factory=_HeaderClasses(), max_line_length=998)

# Messages whose calendar entry is attached, and those that remove it.
CALENDAR_ATTACHED = {"booking_confirmed", "booking_promoted", "event_changed", "reminder"}
CALENDAR_CANCELLED = {"booking_cancelled", "event_cancelled"}
CALENDARED = CALENDAR_ATTACHED | CALENDAR_CANCELLED


class Mailer:
    def __init__(self, settings: Settings, templates: Path | None = None) -> None:
        self._settings = settings
        self.templates = templates_for(settings, templates)
        self._idle: list[aiosmtplib.SMTP] = []
        # The partnership sends the mail and organises the events: one address for both.
        self._from = _sender(settings.mail_from, settings.partnership_name)
        self._organizer = organizer_of(settings.mail_from, settings.partnership_name)
        self._envelope_from = parseaddr(self._from)[1]  # MAIL FROM: the From address

    def prepare(
        self, delivery: Delivery, documents: Sequence[Document] = ()
    ) -> EmailMessage | PlainMail:
        """The email as ``compose`` makes it, written straight to bytes where nothing in it
        needs the email package (``mime``): most of a broadcast's messages."""
        context = delivery.template_context
        rendered = self._render(delivery.template, context)
        attachments = [
            Attachment(
                document.content, f"{document.maintype}/{document.subtype}", document.filename
            )
            for document in documents
        ]
        invitation = self._invitation(delivery.template, context, delivery.recipient)
        if invitation is not None:
            ics, method, filename = invitation
            calendar_type = f'text/calendar; method="{method}"; charset="utf-8"'
            attachments.insert(0, Attachment(ics, calendar_type, filename))
        plain = plain_mail(
            self._envelope_from,
            delivery.recipient,
            self._headers(delivery, context, rendered),
            rendered.text,
            rendered.html,
            attachments,
        )
        return plain if plain is not None else self.compose(delivery, documents)

    def compose(self, delivery: Delivery, documents: Sequence[Document] = ()) -> EmailMessage:
        """A multipart (text and HTML, and attachments) email; its Message-ID is fixed by the
        ledger row. ``documents`` (an invoice's PDF) are attached as they are."""
        context = delivery.template_context
        rendered = self._render(delivery.template, context)
        message = EmailMessage(policy=POLICY)
        for name, value in self._headers(delivery, context, rendered):
            message[name] = value
        message.set_content(rendered.text)
        message.add_alternative(rendered.html, subtype="html")
        self._attach(message, delivery.template, context, delivery.recipient)
        for document in documents:
            message.add_attachment(
                document.content,
                maintype=document.maintype,
                subtype=document.subtype,
                filename=document.filename,
            )
        return message

    def _render(self, template: str, context: dict[str, Any]) -> RenderedEmail:
        try:
            return self.templates.email(template, context)
        except TemplateProblem as problem:
            raise PermanentFailure(str(problem)) from None

    def _headers(
        self, delivery: Delivery, context: dict[str, Any], rendered: RenderedEmail
    ) -> list[tuple[str, str]]:
        headers = [("Subject", rendered.subject), ("From", self._from), ("To", delivery.recipient)]
        if self._settings.mail_reply_to:
            headers.append(("Reply-To", self._settings.mail_reply_to))
        headers += [
            ("Date", formatdate(localtime=False)),
            # A resend after a crash carries the same Message-ID, so mail systems can drop
            # the copy.
            ("Message-ID", f"<{delivery.id}@vestry.invalid>"),
            ("X-Vestry-Delivery", delivery.id),
        ]
        if "unsubscribe_url" in context:  # a broadcast: one-click unsubscribe (RFC 8058)
            headers.append(("List-Unsubscribe", f"<{context['unsubscribe_url']}>"))
            headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
        return headers

    def _attach(
        self, message: EmailMessage, template: str, context: dict[str, Any], recipient: str
    ) -> None:
        invitation = self._invitation(template, context, recipient)
        if invitation is not None:
            ics, method, filename = invitation
            message.add_attachment(
                ics,
                maintype="text",
                subtype="calendar",
                filename=filename,
                params={"method": method, "charset": "utf-8"},
            )

    def _invitation(
        self, template: str, context: dict[str, Any], recipient: str
    ) -> tuple[bytes, str, str] | None:
        """The calendar entry a booking's message carries: the ``.ics``, its iTIP method
        and its file name; None for a message that carries none."""
        calendar = context.get("calendar")
        if not calendar or template not in CALENDARED:
            return None
        cancel = template in CALENDAR_CANCELLED
        reference = context.get("reference")
        # iTIP (RFC 5546): the partnership organises, the booker attends, and the
        # invitation is the booking's (its own UID), not the event's.
        ics = calendar_attachment(
            calendar,
            cancel=cancel,
            uid=invitation_uid(calendar["uid"], str(reference)) if reference else None,
            organizer=self._organizer,
            attendee=Party(name=str(context.get("name") or ""), email=recipient),
        )
        return ics, "CANCEL" if cancel else "REQUEST", "cancelled.ics" if cancel else "event.ics"

    async def send(self, message: EmailMessage | PlainMail) -> None:
        """Hand ``message`` over; raises TransientFailure or PermanentFailure when refused.

        Connections are kept open and reused (one per message in flight), as a
        mail relay prefers; one the server has closed since is replaced once.
        """
        if isinstance(message, PlainMail):  # its addresses are ASCII already
            sender, recipients, utf8 = message.sender, [message.recipient], False
        else:
            sender, recipients = _envelope(message)
            # An address beyond ASCII in its mailbox part needs the server's SMTPUTF8
            # (RFC 6531); one beyond ASCII in its domain alone goes as the domain's
            # ASCII form (IDNA) without it.
            recipients = [_ascii_domain(address) for address in recipients]
            utf8 = not all(address.isascii() for address in (sender, *recipients))
            if not utf8:
                _ascii_domains_in_headers(message)
        for fresh in (False, True):
            client, reused = await self._checkout(fresh)
            try:
                await client.sendmail(
                    sender,
                    recipients,
                    _wire(message, client, utf8=utf8),
                    mail_options=["SMTPUTF8"] if utf8 else None,
                )
            except aiosmtplib.SMTPNotSupported as unsupported:
                # This server cannot take the address, now or on a retry.
                self._idle.append(client)
                raise PermanentFailure(
                    f"the mail server does not accept internationalised addresses "
                    f"(it offers no SMTPUTF8): {unsupported}"
                ) from None
            except aiosmtplib.SMTPServerDisconnected as gone:
                self._discard(client)
                if reused and not fresh:
                    continue  # it timed out while idle: try a new connection
                raise TransientFailure(f"{type(gone).__name__}: {gone}") from None
            except aiosmtplib.SMTPRecipientsRefused as refused:
                self._discard(client)
                codes = [recipient.code for recipient in refused.recipients]
                raise _by_code(min(codes), f"SMTPRecipientsRefused: {refused}") from None
            except aiosmtplib.SMTPResponseException as error:
                self._discard(client)
                raise _by_code(error.code, f"{type(error).__name__}: {error}") from None
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
                # Could not connect, timed out: the server may be back later.
                self._discard(client)
                raise TransientFailure(f"{type(error).__name__}: {error}") from None
            self._idle.append(client)
            return

    async def _checkout(self, fresh: bool) -> tuple[aiosmtplib.SMTP, bool]:
        while self._idle and not fresh:
            client = self._idle.pop()
            if client.is_connected:
                return client, True
        settings = self._settings
        client = aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            start_tls=settings.smtp_starttls,
            use_tls=settings.smtp_tls,
            username=settings.smtp_username,
            password=settings.smtp_password,
            timeout=30,
        )
        try:
            await client.connect()
        except aiosmtplib.SMTPResponseException as error:
            self._discard(client)
            raise _by_code(error.code, f"{type(error).__name__}: {error}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            self._discard(client)
            raise TransientFailure(f"{type(error).__name__}: {error}") from None
        return client, False

    @staticmethod
    def _discard(client: aiosmtplib.SMTP) -> None:
        if client.is_connected:
            client.close()

    async def close(self) -> None:
        """Say goodbye to the server on every idle connection."""
        idle, self._idle = self._idle, []
        for client in idle:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    client.close()


def _sender(mail_from: str, partnership_name: str) -> str:
    """The From header: ``mail_from`` as configured, named after the partnership if it
    gives an address alone."""
    display, address = parseaddr(mail_from)
    if display or not address or not partnership_name:
        return mail_from
    return formataddr((partnership_name, address))


def _by_code(code: int, text: str) -> Exception:
    """SMTP 5xx is permanent (RFC 5321); 4xx, and anything odd, is worth another try."""
    if 500 <= code < 600:
        return PermanentFailure(text)
    return TransientFailure(text)


def _envelope(message: EmailMessage) -> tuple[str, list[str]]:
    """The SMTP envelope: MAIL FROM the From address, RCPT TO every To and Cc."""
    (sender,) = [address for _, address in getaddresses([str(message["From"])])]
    recipients = getaddresses([str(value) for value in message.get_all("To", [])])
    recipients += getaddresses([str(value) for value in message.get_all("Cc", [])])
    return sender, [address for _, address in recipients]


def _ascii_domain(address: str) -> str:
    """``address`` with its domain in ASCII (IDNA), if the domain is all that is not."""
    mailbox, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        return f"{mailbox}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return address  # no ASCII form: it goes as it is, with SMTPUTF8 or not at all


def _ascii_domains_in_headers(message: EmailMessage) -> None:
    """To and Cc with each domain in its ASCII form: an encoded word may stand for a
    display name, never for an address (RFC 2047, section 5)."""
    for header in ("To", "Cc"):
        values = message.get_all(header, [])
        if not values or all(str(value).isascii() for value in values):
            continue
        addresses = getaddresses([str(value) for value in values])
        del message[header]
        message[header] = ", ".join(
            formataddr((name, _ascii_domain(address))) for name, address in addresses
        )


def _wire(
    message: EmailMessage | PlainMail, client: aiosmtplib.SMTP, *, utf8: bool = False
) -> bytes:
    """The message as sent, flattened with our policy (aiosmtplib's own would fold
    header lines at 78 characters and break a long List-Unsubscribe link); with
    SMTPUTF8, headers may carry UTF-8 as it is (RFC 6532)."""
    if isinstance(message, PlainMail):
        return message.wire(eight_bit=client.supports_extension("8bitmime"))
    policy = POLICY.clone(linesep="\r\n", utf8=utf8)
    if not client.supports_extension("8bitmime"):
        policy = policy.clone(cte_type="7bit")
    return message.as_bytes(policy=policy)
