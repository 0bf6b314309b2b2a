"""The development mail server: accepts every message and keeps it as an ``.eml`` file."""

from __future__ import annotations

import argparse
import email
import email.policy
import signal
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope as SmtpEnvelope


class CaptureHandler:
    """aiosmtpd handler writing each accepted message to ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._count = len(list(directory.glob("*.eml")))

    async def handle_DATA(self, server: Any, session: Any, envelope: SmtpEnvelope) -> str:
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode()
        with self._lock:
            self._count += 1
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            path = self.directory / f"{stamp}-{self._count:06d}.eml"
        partial = path.with_suffix(".part")
        partial.write_bytes(content)
        partial.rename(path)  # readers never see half a message
        return "250 Message accepted for delivery"


def start(directory: Path, port: int, host: str = "127.0.0.1") -> Controller:
    # SMTPUTF8 on, as most mail servers now offer it (RFC 6531): internationalised
    # addresses arrive as they would in production.
    controller = Controller(
        CaptureHandler(directory), hostname=host, port=port, enable_SMTPUTF8=True
    )
    controller.start()
    return controller


@dataclass(frozen=True)
class CapturedMail:
    path: Path
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def to(self) -> str:
        return str(self.message["To"] or "")

    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain", "html"))
        return part.get_content() if part is not None else ""


def read_mailbox(directory: Path) -> list[CapturedMail]:
    """Every captured message, oldest first."""
    return [read_mail(path) for path in sorted(directory.glob("*.eml"))]


def read_mail(path: Path) -> CapturedMail:
    """One captured message (written whole under its name, and never changed after)."""
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return CapturedMail(path, parsed)


def main() -> None:
    parser = argparse.ArgumentParser(description="Capture SMTP mail as .eml files.")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    controller = start(args.dir, args.port, args.host)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    print(f"capturing mail on {args.host}:{args.port} into {args.dir}", flush=True)
    while not stopping.is_set():
        time.sleep(0.2)
    controller.stop()


if __name__ == "__main__":
    main()
