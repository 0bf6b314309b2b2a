"""Reading facts back as a service does: personal fields opened with the person's key."""

from __future__ import annotations

from nats.aio.client import Client

from contracts import Envelope
from kernel.personal import Keyring
from kernel.settings import Settings

_keyrings: dict[int, Keyring] = {}


async def keyring_of(nc: Client) -> Keyring:
    """The keyring the services of a test use (they share the default secret)."""
    if id(nc) not in _keyrings:
        _keyrings[id(nc)] = await Keyring.connect(
            nc, nc.jetstream(), secret=Settings().person_key_secret
        )
    return _keyrings[id(nc)]


async def opened(nc: Client, raw: bytes) -> Envelope:
    """The envelope in ``raw`` with its personal fields opened (or erased, if shredded)."""
    return await (await keyring_of(nc)).open(Envelope.from_bytes(raw))
