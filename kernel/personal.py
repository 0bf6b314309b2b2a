"""Crypto-shredding: personal fields in facts sealed with a key per person.

A fact's fields marked ``Personal`` (contracts/personal.py) are encrypted with
AES-256-GCM under a key that belongs to one person when the outbox relay publishes
the fact (and the published row keeps only the sealed form); a consumer opens them
before its handler sees the fact. The keys live
in a JetStream stream of their own (PERSON_KEYS), one message per person on
``people.key.<person id>``, the person id an HMAC of their address under
``person_key_secret``, so the key store names no one. Erasing a person deletes
their key's message with JetStream's secure erase (the bytes on disk are
overwritten), after which every fact that named them opens to the erased
stand-ins: a replay or a rebuild finds nobody there.

A plain stream, not a KV bucket: JetStream KV buckets deny message deletion,
and a KV purge leaves the old bytes in the block until it is compacted.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import time
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NotFoundError
from pydantic import BaseModel

from contracts import REGISTRY, Envelope, UnknownMessage
from contracts.personal import (
    SEALED_PREFIX,
    Personal,
    is_erased_email,
    normalised_email,
    personal_fields,
)

log = logging.getLogger(__name__)

KEYS_STREAM = "PERSON_KEYS"
KEY_SUBJECT = "people.key"  # people.key.<person id>: one message, the person's key
SHREDDED_SUBJECT = "people.key_shredded"  # core NATS only: drop this person's cached key
CACHE_SECONDS = 300.0  # a replica that missed a shredding notice forgets the key by then

_WRONG_LAST_SEQUENCE = 10071  # JetStream: Nats-Expected-Last-Subject-Sequence not met


def person_id(secret: str, email: str) -> str:
    """The person's id in the key store: an HMAC of their address, naming no one."""
    digest = hmac.new(secret.encode(), normalised_email(email).encode(), hashlib.sha256)
    return digest.hexdigest()[:40]


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def seal_value(key: bytes, pid: str, value: Any) -> str:
    """``value`` encrypted under ``key``; the person id is bound in as associated data."""
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, json.dumps(value).encode(), pid.encode())
    return f"{SEALED_PREFIX}{pid}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"


def sealed_person(value: str) -> str:
    """The person id a sealed value names."""
    return value[len(SEALED_PREFIX) :].split(":", 1)[0]


def open_value(key: bytes, value: str) -> Any:
    pid, body = value[len(SEALED_PREFIX) :].split(":", 1)
    raw = base64.urlsafe_b64decode(body)
    return json.loads(AESGCM(key).decrypt(raw[:12], raw[12:], pid.encode()))


# Where the personal fields of a message are: per model, its own marked fields and
# the fields holding nested models that may have some.


@dataclass(frozen=True)
class _Plan:
    marked: dict[str, Personal]
    optional: frozenset[str]
    nested: dict[str, type[BaseModel]]


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


@cache
def _plan(model: type[BaseModel]) -> _Plan:
    nested: dict[str, type[BaseModel]] = {}
    for name, field in model.model_fields.items():
        for inner in _models_in(field.annotation):
            if _carries_personal(inner):
                nested[name] = inner
    optional = frozenset(
        name
        for name, field in model.model_fields.items()
        if type(None) in typing.get_args(field.annotation)
    )
    return _Plan(personal_fields(model), optional, nested)


@cache
def _carries_personal(model: type[BaseModel]) -> bool:
    if personal_fields(model):
        return True
    return any(
        _carries_personal(inner)
        for field in model.model_fields.values()
        for inner in _models_in(field.annotation)
        if inner is not model
    )


def _walk(model: type[BaseModel], data: Any) -> Iterator[tuple[dict[str, Any], _Plan]]:
    """Each (dict, plan) in ``data`` that has personal fields, nested ones included."""
    if not isinstance(data, dict):
        return
    plan = _plan(model)
    if plan.marked:
        yield data, plan
    for name, inner in plan.nested.items():
        value = data.get(name)
        for item in value if isinstance(value, list) else [value]:
            yield from _walk(inner, item)


def message_model(envelope: Envelope) -> type[BaseModel] | None:
    try:
        spec = REGISTRY.spec(envelope.type, envelope.version)
    except UnknownMessage:
        return None
    return spec.model if spec.kind == "fact" else None


def emails_in(envelope: Envelope) -> set[str]:
    """The addresses of the people a fact names, in plaintext (not yet sealed)."""
    model = message_model(envelope)
    found: set[str] = set()
    if model is None:
        return found
    for data, plan in _walk(model, envelope.data):
        for name, mark in plan.marked.items():
            owner = data.get(mark.key or name)
            # A stand-in for someone already erased names nobody: nothing to seal.
            if isinstance(owner, str) and not is_sealed(owner) and not is_erased_email(owner):
                found.add(owner)
    return found


def stand_ins(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with every sealed value replaced by its erased stand-in: the form a fact
    takes for a reader without keys (schema checks, an operator's tail)."""
    copy = json.loads(json.dumps(data))
    for part, plan in _walk(model, copy):
        for name, mark in plan.marked.items():
            if is_sealed(part.get(name)):
                part[name] = mark.erased(name in plan.optional)
    return copy


class Keyring:
    """The person keys: created on first need, cached, deleted for good on erasure."""

    def __init__(self, js: JetStreamContext, *, secret: str) -> None:
        self._js = js
        self._secret = secret
        self._cache: dict[str, tuple[bytes, float]] = {}
        self._nc: Client | None = None

    @classmethod
    async def connect(
        cls, nc: Client, js: JetStreamContext, *, secret: str, replicas: int = 1
    ) -> Keyring:
        """The keyring, declaring its stream if need be and listening for shreddings."""
        keyring = cls(js, secret=secret)
        await ensure_keys_stream(js, replicas=replicas)
        keyring._nc = nc
        await nc.subscribe(f"{SHREDDED_SUBJECT}.*", cb=keyring._on_shredded)
        return keyring

    def person_id(self, email: str) -> str:
        return person_id(self._secret, email)

    # Keys

    def _cached(self, pid: str) -> bytes | None:
        hit = self._cache.get(pid)
        if hit is None or time.monotonic() - hit[1] > CACHE_SECONDS:
            return None
        return hit[0]

    async def _fetch(self, pid: str) -> bytes | None:
        try:
            msg = await self._js.get_last_msg(KEYS_STREAM, f"{KEY_SUBJECT}.{pid}")
        except NotFoundError:
            return None
        if not msg.data:
            return None
        self._cache[pid] = (msg.data, time.monotonic())
        return msg.data

    async def _create(self, pid: str) -> bytes:
        key = AESGCM.generate_key(bit_length=256)
        try:
            await self._js.publish(
                f"{KEY_SUBJECT}.{pid}",
                key,
                stream=KEYS_STREAM,
                headers={"Nats-Expected-Last-Subject-Sequence": "0"},
            )
        except APIError as error:
            if error.err_code != _WRONG_LAST_SEQUENCE:
                raise
            found = await self._fetch(pid)  # another process made it first: use theirs
            if found is None:
                raise
            return found
        self._cache[pid] = (key, time.monotonic())
        return key

    async def key_for(self, pid: str, *, create: bool) -> bytes | None:
        key = self._cached(pid) or await self._fetch(pid)
        if key is None and create:
            key = await self._create(pid)
        return key

    async def shred(self, email: str) -> bool:
        """Delete the person's key for good (secure erase); False if there was none."""
        pid = self.person_id(email)
        self._cache.pop(pid, None)
        shredded = False
        while True:
            try:
                msg = await self._js.get_last_msg(KEYS_STREAM, f"{KEY_SUBJECT}.{pid}")
            except NotFoundError:
                break
            await self._js.delete_msg(KEYS_STREAM, msg.seq)  # erases: bytes overwritten
            shredded = True
        if self._nc is not None:
            await self._nc.publish(f"{SHREDDED_SUBJECT}.{pid}", b"")
            await self._nc.flush()
        return shredded

    async def _on_shredded(self, msg: Msg) -> None:
        self._cache.pop(msg.subject.rsplit(".", 1)[-1], None)

    # Facts

    async def seal(self, envelopes: Iterable[Envelope]) -> list[Envelope]:
        """``envelopes`` with every personal field of every fact sealed under its person's key."""
        envelopes = list(envelopes)
        named = [emails_in(envelope) for envelope in envelopes]
        people = {self.person_id(email) for emails in named for email in emails}
        keys = dict(
            zip(
                people,
                await asyncio.gather(*(self.key_for(pid, create=True) for pid in people)),
                strict=True,
            )
        )
        sealed: list[Envelope] = []
        for envelope, emails in zip(envelopes, named, strict=True):
            model = message_model(envelope)
            if model is None or not emails:
                sealed.append(envelope)
                continue
            data = json.loads(json.dumps(envelope.data))
            for part, plan in _walk(model, data):
                owners = {name: part.get(mark.key or name) for name, mark in plan.marked.items()}
                for name in plan.marked:
                    value, owner = part.get(name), owners[name]
                    if (
                        value is None
                        or is_sealed(value)
                        or not isinstance(owner, str)
                        or is_erased_email(owner)
                    ):
                        continue
                    pid = self.person_id(owner)
                    key = keys[pid]
                    assert key is not None
                    part[name] = seal_value(key, pid, value)
            sealed.append(envelope.model_copy(update={"data": data}))
        return sealed

    async def warm(self, raws: Iterable[bytes]) -> None:
        """Fetch at once the keys of everyone the raw facts ``raws`` name, so that opening
        them one by one waits on no round trip (a consumer's fetched batch)."""
        wanted: set[str] = set()
        for raw in raws:
            start = 0
            while (found := raw.find(SEALED_PREFIX.encode(), start)) != -1:
                begin = found + len(SEALED_PREFIX)
                wanted.add(raw[begin : begin + 40].decode(errors="replace"))
                start = begin
        missing = [pid for pid in wanted if self._cached(pid) is None]
        await asyncio.gather(*(self._fetch(pid) for pid in missing))

    async def open(self, envelope: Envelope) -> Envelope:
        """``envelope`` with its sealed fields opened, or erased stand-ins where the key is gone."""
        model = message_model(envelope)
        if model is None:
            return envelope
        parts = list(_walk(model, envelope.data))
        if not any(is_sealed(v) for part, _ in parts for v in part.values()):
            return envelope
        data = json.loads(json.dumps(envelope.data))
        for part, plan in _walk(model, data):
            for name, mark in plan.marked.items():
                value = part.get(name)
                if not is_sealed(value):
                    continue
                key = await self.key_for(sealed_person(value), create=False)
                part[name] = open_value(key, value) if key else mark.erased(name in plan.optional)
        return envelope.model_copy(update={"data": data})


def keys_stream_config(replicas: int = 1) -> StreamConfig:
    """PERSON_KEYS: one message (a key) per person, in files, readable from any replica.

    A second key for a person is refused, not kept in place of the first
    (``discard_new_per_subject``): whoever may make a key cannot replace one, and so
    cannot make a person's facts unreadable nor leave the old key's bytes unerased.
    Nobody may purge the stream; a key goes only by its own secure erase.
    """
    return StreamConfig(
        name=KEYS_STREAM,
        description="One key per person, for the personal fields of facts; erasure deletes it.",
        subjects=[f"{KEY_SUBJECT}.*"],
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,
        discard_new_per_subject=True,
        max_msgs_per_subject=1,
        num_replicas=replicas,
        allow_direct=True,
        deny_purge=True,
    )


async def ensure_keys_stream(js: JetStreamContext, *, replicas: int = 1) -> None:
    config = keys_stream_config(replicas)
    try:
        await js.stream_info(KEYS_STREAM)
    except NotFoundError:
        await js.add_stream(config)
