"""An internationalised address (RFC 6531) is sent with SMTPUTF8 where the mail server
offers it, and fails at once, as permanent, where it does not: never retried for
three quarters of an hour as a transient fault."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from kernel.settings import Settings
from services.notifications.failures import PermanentFailure
from services.notifications.mailer import Mailer
from tests.conftest import Mailbox
from vestry import mailcapture
from vestry.natsserver import free_port


def _message(to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "alerts@partnership.example.org"
    message["To"] = to
    message["Subject"] = "Patch now"
    message.set_content("A flaw in a common VPN appliance.")
    return message


@pytest.fixture
def old_server(tmp_path: Path) -> Iterator[int]:
    """A mail server that offers no SMTPUTF8, as some relays still do not."""
    port = free_port()
    controller = Controller(
        mailcapture.CaptureHandler(tmp_path / "old"),
        hostname="127.0.0.1",
        port=port,
        enable_SMTPUTF8=False,
    )
    controller.start()
    yield port
    controller.stop()


async def test_a_mailbox_beyond_ascii_is_sent_with_smtputf8_where_offered(
    tmp_path: Path, mailbox: Mailbox
) -> None:
    mailer = Mailer(Settings(data_dir=tmp_path, smtp_port=mailbox.port))
    try:
        await mailer.send(_message("ünï@exämple.org"))
        await mailer.send(_message("jo@exämple.org"))  # a domain alone: its ASCII form
    finally:
        await mailer.close()
    to = sorted(mail.to for mail in mailbox.mails())
    assert to == ["jo@xn--exmple-cua.org", "ünï@exämple.org"]


async def test_without_smtputf8_it_fails_at_once_as_permanent(
    tmp_path: Path, old_server: int
) -> None:
    mailer = Mailer(Settings(data_dir=tmp_path, smtp_port=old_server))
    try:
        with pytest.raises(PermanentFailure, match="SMTPUTF8"):
            await mailer.send(_message("ünï@exämple.org"))
        await mailer.send(_message("jo@exämple.org"))  # the domain's ASCII form needs none
    finally:
        await mailer.close()
    [mail] = mailcapture.read_mailbox(tmp_path / "old")
    assert "xn--exmple-cua.org" in mail.path.read_bytes().decode()
