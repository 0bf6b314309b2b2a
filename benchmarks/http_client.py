"""A keep-alive HTTP/1.1 client light enough not to be what a load test measures.

50 clients in one process asking as fast as the site answers: a general client in
pure Python (httpx: about 3.5 ms of CPU a request here) saturates its own core
before the site does, and the figures become the client's. This one writes each
request as bytes on a connection of the client's own and reads the answer by its
Content-Length (or chunks): what a browser's connection does, and no more. No
redirects are followed and no cookies kept; the caller sends the ones it means to.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

Address = tuple[str, int]


class ClosedEarly(ConnectionError):
    """The server closed the connection before it had answered."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]  # names in lower case, in the order sent
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def cookie(self, name: str) -> str | None:
        """The value the answer sets for cookie ``name``, if it sets one."""
        for header, value in self.headers:
            if header == "set-cookie":
                pair = value.split(";", 1)[0]
                key, _, found = pair.partition("=")
                if key.strip() == name:
                    return found.strip()
        return None


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


@dataclass
class LoadClient:
    """One keep-alive connection per (client, server), opened when first needed."""

    timeout_s: float = 300.0
    _open: dict[tuple[int, Address], _Connection] = field(default_factory=dict)

    async def get(
        self, url: str, *, client: int = 0, headers: dict[str, str] | None = None
    ) -> Answer:
        return await self.send("GET", url, client=client, headers=headers)

    async def post_form(
        self,
        url: str,
        form: dict[str, str],
        *,
        client: int = 0,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        body = urlencode(form).encode()
        sent = {**(headers or {}), "Content-Type": "application/x-www-form-urlencoded"}
        return await self.send("POST", url, client=client, headers=sent, body=body)

    async def send(
        self,
        method: str,
        url: str,
        *,
        client: int = 0,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> Answer:
        parts = urlsplit(url)
        address = (parts.hostname or "127.0.0.1", parts.port or 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        connection = await self._connection(client, address)
        try:
            async with asyncio.timeout(self.timeout_s):
                connection.writer.write(request)
                answer, keep = await _read_answer(connection.reader)
        except BaseException:
            self._drop(client, address)
            raise
        if not keep:
            self._drop(client, address)
        return answer

    async def close(self) -> None:
        for key in list(self._open):
            self._drop(*key)

    async def __aenter__(self) -> LoadClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _connection(self, client: int, address: Address) -> _Connection:
        connection = self._open.get((client, address))
        if connection is not None and connection.reader.at_eof():  # closed while idle
            self._drop(client, address)
            connection = None
        if connection is None:
            reader, writer = await asyncio.open_connection(*address)
            connection = self._open[(client, address)] = _Connection(reader, writer)
        return connection

    def _drop(self, client: int, address: Address) -> None:
        connection = self._open.pop((client, address), None)
        if connection is not None:
            connection.writer.close()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[Answer, bool]:
    """The answer on ``reader``, and whether its connection may be used again."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        raise ClosedEarly("the server closed the connection without answering") from error
    status_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
    status = int(status_line.split(" ", 2)[1])
    headers = []
    for line in header_lines:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    found = dict(headers)
    if found.get("transfer-encoding", "").lower() == "chunked":
        body = await _chunks(reader)
    elif "content-length" in found:
        body = await reader.readexactly(int(found["content-length"]))
    else:
        body = await reader.read()  # until the server closes
        return Answer(status, headers, body), False
    keep = found.get("connection", "").lower() != "close"
    return Answer(status, headers, body), keep


async def _chunks(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)
