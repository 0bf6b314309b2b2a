"""The CLI's NATS connection and how its failures read to an operator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
from nats.aio.client import Client


class NatsUnreachable(Exception):
    """Raised when the CLI cannot reach NATS at the URL it was given."""


@asynccontextmanager
async def connected(url: str) -> AsyncIterator[Client]:

    async def quiet(error: Exception) -> None:  # the failure is reported once, below
        pass

    try:
        client = await nats.connect(
            url.split(","),
            name="vestry-cli",
            error_cb=quiet,
            connect_timeout=2,
            max_reconnect_attempts=2,
            allow_reconnect=True,
            reconnect_time_wait=0.5,
        )
    except Exception as error:
        raise NatsUnreachable(
            f"cannot reach NATS at {url} ({error or type(error).__name__}): "
            "is `vestry dev` running, or is --nats right?"
        ) from None
    try:
        yield client
    finally:
        await client.close()
