"""Person keys found and made a batch at a time (the relay's way), against a real
nats-server: still one key per person, made once and never replaced."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date

from nats.aio.client import Client

from contracts import Envelope
from contracts.subscriptions_v1 import MembershipStarted
from kernel.personal import KEY_SUBJECT, KEYS_STREAM, Keyring, is_sealed

SECRET = "b" * 43


def _started(n: int) -> Envelope:
    return Envelope.wrap(
        MembershipStarted(
            membership_id=str(uuid.uuid4()),
            member_id=str(uuid.uuid4()),
            member_name=f"Council {n:04d}",
            tier="district",
            billing_email=f"finance{n:04d}@council.example.gov.uk",
            starts_on=date(2026, 4, 1),
        )
    )


async def _keys_stored(nc: Client) -> int:
    return (await nc.jetstream().stream_info(KEYS_STREAM)).state.messages


async def _key_of(nc: Client, keyring: Keyring, email: str) -> bytes:
    subject = f"{KEY_SUBJECT}.{keyring.person_id(email)}"
    return (await nc.jetstream().get_last_msg(KEYS_STREAM, subject)).data


async def test_a_batch_of_new_people_gets_a_key_each_that_every_replica_opens_with(
    nc: Client,
) -> None:
    here, there = [await Keyring.connect(nc, nc.jetstream(), secret=SECRET) for _ in range(2)]
    facts = [_started(n) for n in range(300)]

    sealed = await here.seal_payloads([fact.to_bytes() for fact in facts])

    assert await _keys_stored(nc) == 300
    for fact, wire in zip(facts, sealed, strict=True):
        assert wire is not None
        envelope = Envelope.from_bytes(wire)
        assert is_sealed(envelope.data["billing_email"])
        assert b"finance" not in wire
        assert (await there.open(envelope)).data == fact.data


async def test_replicas_meeting_the_same_new_people_at_once_agree_on_one_key_each(
    nc: Client,
) -> None:
    rings = [await Keyring.connect(nc, nc.jetstream(), secret=SECRET) for _ in range(3)]
    facts = [_started(n) for n in range(200)]

    sealed = await asyncio.gather(*(ring.seal(facts) for ring in rings))

    assert await _keys_stored(nc) == 200
    for ring in rings:
        for envelopes in sealed:
            for fact, envelope in zip(facts, envelopes, strict=True):
                assert (await ring.open(envelope)).data == fact.data


async def test_a_key_made_straight_away_never_replaces_one_that_exists(nc: Client) -> None:
    """After a batch of new people, the keyring makes keys without looking first; where
    another replica made one meanwhile, that one is used and stays."""
    relay = await Keyring.connect(nc, nc.jetstream(), secret=SECRET)
    other = await Keyring.connect(nc, nc.jetstream(), secret=SECRET)
    await relay.seal([_started(n) for n in range(100)])  # all new: it now makes first
    later = [_started(n) for n in range(100, 200)]
    await other.seal(later[::2])  # half of them meet the other replica first
    theirs = {
        fact.data["billing_email"]: await _key_of(nc, other, fact.data["billing_email"])
        for fact in later[::2]
    }

    sealed = await relay.seal(later)

    assert await _keys_stored(nc) == 200
    for email, key in theirs.items():
        assert await _key_of(nc, relay, email) == key  # not replaced
    for fact, envelope in zip(later, sealed, strict=True):
        assert (await other.open(envelope)).data == fact.data
    # Those it met again, with keys already made, it looks for first once more.
    again = await relay.seal([_started(n) for n in range(100, 200)])
    assert await _keys_stored(nc) == 200
    assert all(is_sealed(envelope.data["billing_email"]) for envelope in again)
