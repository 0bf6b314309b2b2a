"""Real parts for every test that needs them: a nats-server from the packaged binary
on a free port with JetStream in a temp dir, SQLite files, and an SMTP capture server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from aiosmtpd.controller import Controller
from nats.aio.client import Client

from kernel.settings import Settings
from vestry import mailcapture
from vestry.natsserver import NatsServer, free_port


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(store_dir=tmp_path / "jetstream", log_file=tmp_path / "nats.log")
    server.start()
    yield server
    server.stop()


class Mailbox:
    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port

    def mails(self) -> list[mailcapture.CapturedMail]:
        return mailcapture.read_mailbox(self.directory)


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[Mailbox]:
    port = free_port()
    controller: Controller = mailcapture.start(tmp_path / "mail", port)
    yield Mailbox(tmp_path / "mail", port)
    controller.stop()


@pytest.fixture
def settings(tmp_path: Path, nats_server: NatsServer, mailbox: Mailbox) -> Settings:
    """Settings with short timings, so retries and redeliveries happen within a test."""
    return Settings(
        data_dir=tmp_path / "data",
        nats_url=nats_server.url,
        smtp_port=mailbox.port,
        retry_backoff_s=[0.2, 0.4, 0.8],
        max_deliver=3,
        ack_wait_s=1.0,
        relay_poll_s=0.1,
        fetch_batch=100,
        duplicate_window_s=600,
    )


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    yield client
    await client.close()


async def eventually(
    check: Callable[[], Any], *, timeout: float = 15.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy; fail after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"not true after {timeout}s: {what or check} (last: {last!r})")


@pytest.fixture
async def streams(nc: Client) -> None:
    """Every stream declared, as the owners would, for tests that run a consumer alone."""
    from kernel.streams import ensure_streams

    await ensure_streams(nc.jetstream(), duplicate_window_s=600)
