"""The CLI's NATS connection and how its failures read to an operator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nats.aio.client import Client


class NatsUnreachable(Exception):
    """Raised when the CLI cannot reach NATS at the URL it was given."""


class NatsRefused(NatsUnreachable):
    """Raised when NATS refuses this user something it asked (a permissions violation):
    nothing will answer, so the CLI stops at once instead of waiting out a timeout."""


@asynccontextmanager
async def connected(url: str) -> AsyncIterator[Client]:
    # nats-py is loaded here, not above: a command that never connects starts without it.
    import nats

    from kernel.settings import Settings, inbox_prefix

    refusals: list[str] = []
    waiting = asyncio.current_task()
    working = False

    async def quiet(error: Exception) -> None:  # the failure is reported once, below
        if "permissions violation" in str(error).lower() and working and not refusals:
            refusals.append(str(error).strip())
            if waiting is not None:
                waiting.cancel()

    try:
        client = await nats.connect(
            url.split(","),
            name="vestry-cli",
            # Replies under the user's own inbox, the only one it may read (_INBOX_<user>).
            inbox_prefix=inbox_prefix(url, Settings().nats_inbox_prefix),
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
        working = True
        yield client
    except asyncio.CancelledError:
        if not refusals:
            raise
        if waiting is not None:
            waiting.uncancel()
        raise NatsRefused(
            f"NATS refused this user: {refusals[0]}. Its NATS user may not do that "
            "(deploy/nats/accounts.conf): the observer only looks, the operator acts."
        ) from None
    finally:
        working = False
        await client.close()
