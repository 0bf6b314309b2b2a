"""A text-and-HTML email, with any attachments, written straight to bytes.

``EmailMessage`` builds a tree of header and part objects and parses every header
value it is given: about 2 ms a message, most of a broadcast's cost. A message of
two alternative bodies and perhaps some attachments (a booking's ``.ics``), with
nothing beyond ASCII in its recipient's address or its files' names, is written
here as the same MIME structure in a few tens of microseconds. Header values beyond ASCII (a subject with a pound sign, a
partnership's name with an accent) are folded into encoded words by the email
package, once per distinct value: they are the same for every recipient of a
broadcast.
"""

from __future__ import annotations

import binascii
import email.policy
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

# Header lines may run to 998 characters (RFC 5322), as the mailer's policy allows.
MAX_LINE = 998
_FOLDING = email.policy.default.clone(max_line_length=MAX_LINE, linesep="\r\n")


@dataclass(frozen=True)
class Attachment:
    """A file as it is attached: its bytes, its content type with any parameters
    (``text/calendar; method="REQUEST"; charset="utf-8"``) and its name."""

    content: bytes
    content_type: str
    filename: str


@dataclass(frozen=True)
class PlainMail:
    """One message ready to go: its envelope, its header lines, its two bodies and its
    attachments."""

    sender: str
    recipient: str
    head: bytes  # every header line, each ending CRLF
    text: str
    html: str
    attachments: tuple[Attachment, ...] = ()

    def wire(self, *, eight_bit: bool) -> bytes:
        """The message as sent. A body beyond ASCII goes as 8bit where the server takes
        it (8BITMIME), as base64 where it does not; an attachment always as base64."""
        inner = _boundary(self.text, self.html)
        bodies = b"".join(
            (
                b'Content-Type: multipart/alternative; boundary="%s"\r\n\r\n' % inner,
                _part(inner, "plain", self.text, eight_bit),
                _part(inner, "html", self.html, eight_bit),
                b"--%s--\r\n" % inner,
            )
        )
        if not self.attachments:
            return self.head + b"MIME-Version: 1.0\r\n" + bodies
        outer = _boundary(self.text, self.html)
        return b"".join(
            (
                self.head,
                b"MIME-Version: 1.0\r\n",
                b'Content-Type: multipart/mixed; boundary="%s"\r\n\r\n' % outer,
                b"--%s\r\n%s\r\n" % (outer, bodies),
                *(_attached(outer, attachment) for attachment in self.attachments),
                b"--%s--\r\n" % outer,
            )
        )


def plain_mail(
    sender: str,
    recipient: str,
    headers: Sequence[tuple[str, str]],
    text: str,
    html: str,
    attachments: Sequence[Attachment] = (),
) -> PlainMail | None:
    """The message, or None if it needs the email package: an address or a file name
    beyond ASCII (a domain in IDNA, SMTPUTF8, a name in RFC 2231's encoding) or a body
    line too long for 7bit or 8bit."""
    if not (sender.isascii() and recipient.isascii()):
        return None
    if _too_long(text) or _too_long(html):
        return None
    for attachment in attachments:
        if not (attachment.filename.isascii() and attachment.content_type.isascii()):
            return None
        if '"' in attachment.filename or "\\" in attachment.filename:
            return None
    head = b"".join(_header(name, value) for name, value in headers)
    return PlainMail(sender, recipient, head, text, html, tuple(attachments))


def _header(name: str, value: str) -> bytes:
    if value.isascii() and "\n" not in value and "\r" not in value:
        line = f"{name}: {value}\r\n"
        if len(line) <= MAX_LINE + 2:
            return line.encode("ascii")
    return _folded(name, value)


@lru_cache(maxsize=256)
def _folded(name: str, value: str) -> bytes:
    header = _FOLDING.header_factory(name, value)
    return header.fold(policy=_FOLDING).encode("ascii")


def _too_long(body: str) -> bool:
    return any(len(line) > MAX_LINE for line in body.encode("utf-8").splitlines())


def _part(boundary: bytes, subtype: str, body: str, eight_bit: bool) -> bytes:
    data = body.encode("utf-8")
    if data.isascii():
        encoding, content = b"7bit", _lines(data)
    elif eight_bit:
        encoding, content = b"8bit", _lines(data)
    else:
        encoding, content = b"base64", _base64(_lines(data))
    return (
        b'--%s\r\nContent-Type: text/%s; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: %s\r\n\r\n%s\r\n"
        % (boundary, subtype.encode("ascii"), encoding, content)
    )


def _attached(boundary: bytes, attachment: Attachment) -> bytes:
    return (
        b"--%s\r\nContent-Type: %s\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="%s"\r\n\r\n%s\r\n'
        % (
            boundary,
            attachment.content_type.encode("ascii"),
            attachment.filename.encode("ascii"),
            _base64(attachment.content),
        )
    )


def _lines(data: bytes) -> bytes:
    return b"".join(line + b"\r\n" for line in data.splitlines())


def _base64(data: bytes) -> bytes:
    return b"".join(
        binascii.b2a_base64(data[start : start + 57], newline=False) + b"\r\n"
        for start in range(0, len(data), 57)
    )


def _boundary(*bodies: str) -> bytes:
    """A boundary no body contains, shaped as the email package makes them."""
    while True:
        token = "=" * 15 + f"{random.randrange(sys.maxsize):019d}" + "=="
        if not any(token in body for body in bodies):
            return token.encode("ascii")
