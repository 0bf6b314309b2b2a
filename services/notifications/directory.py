"""The contact directory as learnt from other services' facts: the people a fact
names, with what the fact says of them.

Each field keeps the latest value any fact gave it, ordered by when the fact
happened (then by its id), so the order facts arrive in does not matter: a
rebuild, which reads the streams one after another, gives the rows that live
traffic, which reads them interleaved, built. An SMS opt-in on a booking form
stays: opting out is the person's own choice, kept with their contact.

A person's contact id is what an unsubscribe link names. It is an HMAC of their
address under a key only this service holds (``VESTRY_CONTACT_ID_SECRET``), not a
hash anyone could compute from the address: knowing someone's address is not
enough to name them in a link, even to whoever holds the key that signs links.
It is still fixed by the address, so a rebuild of the directory gives everyone
back the id they had.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from kernel.settings import Settings

SOURCES = ("membership", "billing", "booking")


def stamp(occurred_at: datetime, fact_id: str) -> str:
    """When a fact happened, then its id: orders facts the same way on every read."""
    return f"{occurred_at.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%fZ} {fact_id}"


@functools.cache
def contact_id_key() -> str:
    """The key contact ids are derived with: ``VESTRY_CONTACT_ID_SECRET``, read once."""
    return Settings().contact_id_secret


def contact_id_for(email: str, key: str | None = None) -> str:
    """The id a person has before any choice of theirs is recorded: fixed by their email
    and the contact-id key (``contact_id_key()`` unless given), unguessable without it.

    A UUID in form (version 4 bits, as the rest is indistinguishable from random).
    """
    secret = contact_id_key() if key is None else key
    address = email.strip().lower().encode()
    digest = hmac.new(secret.encode(), b"contact:" + address, hashlib.sha256).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


@dataclass(frozen=True)
class Sighting:
    """One fact naming one person."""

    email: str
    source: str
    stamp: str
    name: str | None = None
    organisation: str | None = None
    mobile: str | None = None
    sms_opt_in: bool = False


@dataclass(frozen=True)
class Entry:
    """What the facts so far say of one person."""

    email: str
    contact_id: str
    sources: str = ""
    name: str | None = None
    name_stamp: str = ""
    organisation: str | None = None
    organisation_stamp: str = ""
    mobile: str | None = None
    mobile_stamp: str = ""
    sms_opt_in: bool = False
    first_seen: str = ""
    last_seen: str = ""


def _latest(value: str | None, at: str, seen: str | None, seen_at: str) -> tuple[str | None, str]:
    """The later of two values, an absent one never winning; a tie goes to the greater."""
    if seen is None:
        return value, at
    if value is None or (seen_at, seen) > (at, value):
        return seen, seen_at
    return value, at


def learn(entry: Entry | None, seen: Sighting) -> Entry:
    """The entry once ``seen`` is taken in: the same whatever order sightings come in,
    and the same if one comes twice."""
    email = seen.email.strip().lower()
    entry = entry or Entry(email=email, contact_id=contact_id_for(email))
    name, name_stamp = _latest(entry.name, entry.name_stamp, seen.name, seen.stamp)
    organisation, organisation_stamp = _latest(
        entry.organisation, entry.organisation_stamp, seen.organisation, seen.stamp
    )
    mobile, mobile_stamp = _latest(entry.mobile, entry.mobile_stamp, seen.mobile, seen.stamp)
    sources = sorted(set(filter(None, entry.sources.split(","))) | {seen.source})
    return replace(
        entry,
        sources=",".join(sources),
        name=name,
        name_stamp=name_stamp,
        organisation=organisation,
        organisation_stamp=organisation_stamp,
        mobile=mobile,
        mobile_stamp=mobile_stamp,
        sms_opt_in=entry.sms_opt_in or (seen.sms_opt_in and seen.mobile is not None),
        first_seen=min(filter(None, (entry.first_seen, seen.stamp))),
        last_seen=max(entry.last_seen, seen.stamp),
    )
