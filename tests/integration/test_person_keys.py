"""Crypto-shredding against a real nats-server: facts sealed per person, keys erased for good."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import nats
from nats.aio.client import Client

from contracts import Envelope
from contracts.events_v1 import BookingConfirmed, EventChanged
from contracts.personal import ERASED_EMAIL, ERASED_NAME
from kernel.personal import KEYS_STREAM, Keyring, is_sealed, person_id
from kernel.settings import Settings
from vestry.natsserver import NatsServer

SECRET = "k" * 43
WHEN = datetime(2027, 3, 4, 10, tzinfo=UTC)
CALENDAR = {
    "uid": "evt-1@vestry",
    "sequence": 0,
    "summary": "Records management workshop",
    "description": "A morning on retention schedules.",
    "starts_at": WHEN,
    "ends_at": WHEN.replace(hour=13),
    "status": "CONFIRMED",
}


def _booker(name: str, email: str, phone: str | None) -> dict[str, object]:
    return {"name": name, "email": email, "phone": phone, "sms": phone is not None}


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def _confirmed(name: str, email: str, phone: str | None) -> Envelope:
    fact = BookingConfirmed.model_validate(
        {
            "booking_id": "b1",
            "reference": "ABCD1234",
            "event_id": "evt-1",
            "event_title": "Records management workshop",
            "booker": _booker(name, email, phone),
            "channel": "web",
            "price": {"amount_minor": 0},
            "member_price": True,
            "calendar": CALENDAR,
        }
    )
    return Envelope.wrap(fact)


async def test_a_fact_is_sealed_person_by_person_and_opens_to_what_was_sent(nc: Client) -> None:
    keyring = await Keyring.connect(nc, nc.jetstream(), secret=SECRET)
    envelope = _confirmed("Jo Bloggs", "Jo.Bloggs@bury.example.gov.uk", "+447700900123")

    [sealed] = await keyring.seal([envelope])

    booker = sealed.data["booker"]
    assert all(is_sealed(booker[f]) for f in ("name", "email", "phone"))
    assert b"Bloggs" not in sealed.to_bytes() and b"900123" not in sealed.to_bytes()
    assert booker["sms"] == envelope.data["booker"]["sms"]  # not personal: left as it was
    opened = await keyring.open(Envelope.from_bytes(sealed.to_bytes()))
    assert opened.data == envelope.data
    BookingConfirmed.model_validate(opened.data)


async def test_each_attendee_of_one_fact_has_a_key_of_their_own(nc: Client) -> None:
    keyring = await Keyring.connect(nc, nc.jetstream(), secret=SECRET)
    change = EventChanged.model_validate(
        {
            "event_id": "evt-1",
            "title": "Records management workshop",
            "kind": "workshop",
            "programme": "information_sharing_and_security",
            "calendar": CALENDAR,
            "changed": ["starts_at"],
            "moved": True,
            "capacity": 30,
            "attendees": [
                {
                    "booking_id": "b1",
                    "reference": "AAAA1",
                    "booker": _booker("Ann", "ann@wigan.example.gov.uk", None),
                },
                {
                    "booking_id": "b2",
                    "reference": "BBBB2",
                    "booker": _booker("Bob", "bob@wigan.example.gov.uk", None),
                },
            ],
        }
    )
    [sealed] = await keyring.seal([Envelope.wrap(change)])
    await keyring.shred("ann@wigan.example.gov.uk")

    opened = await keyring.open(sealed)

    ann, bob = (a["booker"] for a in opened.data["attendees"])
    assert (ann["name"], ann["email"]) == (ERASED_NAME, ERASED_EMAIL)
    assert (bob["name"], bob["email"]) == ("Bob", "bob@wigan.example.gov.uk")


async def test_after_shredding_no_replica_can_open_the_person_and_the_key_is_gone_from_disk(
    nc: Client, nats_server: NatsServer
) -> None:
    here = await Keyring.connect(nc, nc.jetstream(), secret=SECRET)
    other_nc = await nats.connect(nats_server.url)
    try:
        there = await Keyring.connect(other_nc, other_nc.jetstream(), secret=SECRET)
        [sealed] = await here.seal([_confirmed("Jo Bloggs", "jo@bury.example.gov.uk", None)])
        assert (await there.open(sealed)).data["booker"]["name"] == "Jo Bloggs"  # cached there
        pid = person_id(SECRET, "jo@bury.example.gov.uk")
        key = (await nc.jetstream().get_last_msg(KEYS_STREAM, f"people.key.{pid}")).data

        assert await here.shred("JO@bury.example.gov.uk") is True

        await asyncio.sleep(0.2)  # the shredding notice reaches the other replica
        opened = await there.open(sealed)
        assert opened.data["booker"]["name"] == ERASED_NAME
        assert opened.data["booker"]["email"] == ERASED_EMAIL
        assert opened.data["booker"]["phone"] is None
        BookingConfirmed.model_validate(opened.data)  # the stand-ins are valid
        assert await here.shred("jo@bury.example.gov.uk") is False
        await nc.flush()
        assert _files_containing(Path(nats_server.store_dir), key) == []
    finally:
        await other_nc.close()


async def test_two_replicas_meeting_a_new_person_at_once_agree_on_one_key(nc: Client) -> None:
    rings = [await Keyring.connect(nc, nc.jetstream(), secret=SECRET) for _ in range(3)]
    envelope = _confirmed("Kim", "kim@bolton.example.gov.uk", None)

    sealed = await asyncio.gather(*(ring.seal([envelope]) for ring in rings))

    for ring in rings:
        for [one] in sealed:
            assert (await ring.open(one)).data["booker"]["name"] == "Kim"


def test_the_person_id_names_no_one_without_the_secret() -> None:
    one = person_id(SECRET, "Jo@Bury.example.gov.uk")
    assert one == person_id(SECRET, " jo@bury.example.gov.uk")
    assert one != person_id("x" * 43, "jo@bury.example.gov.uk")
    assert "jo" not in one and len(one) == 40
    assert Settings().person_key_secret == "change-me"  # production refuses it (kernel/production)
