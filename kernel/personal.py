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

import base64
import hmac
import json
import logging
import os
import time
import typing
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import pydantic_core
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
from kernel.outbox import Request, request_all

log = logging.getLogger(__name__)

KEYS_STREAM = "PERSON_KEYS"
KEY_SUBJECT = "people.key"  # people.key.<person id>: one message, the person's key
SHREDDED_SUBJECT = "people.key_shredded"  # core NATS only: drop this person's cached key
CACHE_SECONDS = 300.0  # a replica that missed a shredding notice forgets the key by then

_WRONG_LAST_SEQUENCE = 10071  # JetStream: Nats-Expected-Last-Subject-Sequence not met


def person_id(secret: str, email: str) -> str:
    """The person's id in the key store: an HMAC of their address, naming no one."""
    return hmac.digest(secret.encode(), normalised_email(email).encode(), "sha256").hex()[:40]


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def seal_value(key: bytes, pid: str, value: Any) -> str:
    """``value`` encrypted under ``key``; the person id is bound in as associated data."""
    return _seal_with(AESGCM(key), pid, value)


def _seal_with(cipher: AESGCM, pid: str, value: Any) -> str:
    nonce = os.urandom(12)
    sealed = cipher.encrypt(nonce, json.dumps(value).encode(), pid.encode())
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
    return _fact_model(envelope.type, envelope.version)


def _fact_model(type_: Any, version: Any) -> type[BaseModel] | None:
    if not isinstance(type_, str) or not isinstance(version, int):
        return None
    try:
        spec = REGISTRY.spec(type_, version)
    except UnknownMessage:
        return None
    return spec.model if spec.kind == "fact" else None


def _sealable_owner(owner: Any) -> bool:
    # A stand-in for someone already erased names nobody: nothing to seal.
    return isinstance(owner, str) and not is_sealed(owner) and not is_erased_email(owner)


def _emails(model: type[BaseModel], data: Any) -> set[str]:
    return {
        owner
        for part, plan in _walk(model, data)
        for name, mark in plan.marked.items()
        if _sealable_owner(owner := part.get(mark.key or name))
    }


def emails_in(envelope: Envelope) -> set[str]:
    """The addresses of the people a fact names, in plaintext (not yet sealed)."""
    model = message_model(envelope)
    return set() if model is None else _emails(model, envelope.data)


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

    def __init__(self, js: JetStreamContext, *, secret: str, timeout: float = 10.0) -> None:
        self._js = js
        self._secret = secret
        self._timeout = timeout
        self._cache: dict[str, tuple[bytes, float]] = {}
        self._nc: Client | None = None
        self._mostly_new = False  # whether most people the last batch named had no key

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

    async def key_for(self, pid: str, *, create: bool) -> bytes | None:
        key = self._cached(pid) or await self._fetch(pid)
        if key is None and create:
            key = (await self._create_many([pid]))[1][pid]
        return key

    async def keys_for(self, pids: Iterable[str], *, create: bool) -> dict[str, bytes | None]:
        """The keys of ``pids`` (None where there is none and none is to be made): cached,
        else read, else made if ``create``. The reads go out at once and are answered
        together, then the makings: a batch naming a thousand people waits a round trip
        or two, not a thousand.

        Where most of the last batch's people were new (an import of members, say), a key
        is made straight away, without looking first: JetStream refuses it where the
        person has one already, and that one is then read. Where most had keys (a year's
        run bills people whose keys exist), they are looked for first."""
        keys: dict[str, bytes | None] = {pid: self._cached(pid) for pid in set(pids)}
        missing = [pid for pid, key in keys.items() if key is None]
        if not missing:
            return keys
        made = 0
        if create and self._mostly_new:
            made, found = await self._create_many(missing)
            keys.update(found)
        else:
            keys.update(await self._fetch_many(missing))
            absent = [pid for pid in missing if keys[pid] is None]
            if create and absent:
                made, found = await self._create_many(absent)
                keys.update(found)
        if create:
            self._mostly_new = made * 2 > len(missing)
        return keys

    async def _fetch_many(self, pids: Sequence[str]) -> dict[str, bytes | None]:
        answers = await self._request_all(
            [
                (
                    f"{_api_prefix(self._js)}.STREAM.MSG.GET.{KEYS_STREAM}",
                    b'{"last_by_subj":"%s.%s"}' % (KEY_SUBJECT.encode(), pid.encode()),
                    None,
                )
                for pid in pids
            ]
        )
        found: dict[str, bytes | None] = {}
        now = time.monotonic()
        for pid, answer in zip(pids, answers, strict=True):
            error = answer.get("error")
            if error is not None:
                if error.get("code") != 404:
                    APIError.from_error(error)  # raises
                found[pid] = None
                continue
            key = base64.b64decode(answer["message"].get("data") or "")
            found[pid] = key or None
            if key:
                self._cache[pid] = (key, now)
        return found

    async def _create_many(self, pids: Sequence[str]) -> tuple[int, dict[str, bytes | None]]:
        """Make a key for each of ``pids``, each a message that JetStream stores only while
        the person has none (expected last subject sequence 0): where one exists (made
        by another process, or before), it is read and used, never replaced. Returns how
        many were made, and the keys."""
        made = {pid: AESGCM.generate_key(bit_length=256) for pid in pids}
        headers = {"Nats-Expected-Last-Subject-Sequence": "0", "Nats-Expected-Stream": KEYS_STREAM}
        answers = await self._request_all(
            [(f"{KEY_SUBJECT}.{pid}", key, headers) for pid, key in made.items()]
        )
        keys: dict[str, bytes | None] = {}
        theirs: list[str] = []
        now = time.monotonic()
        for (pid, key), answer in zip(made.items(), answers, strict=True):
            error = answer.get("error")
            if error is None:
                self._cache[pid] = (key, now)
                keys[pid] = key
            elif error.get("err_code") == _WRONG_LAST_SEQUENCE:
                theirs.append(pid)
            else:
                APIError.from_error(error)  # raises
        if theirs:
            found = await self._fetch_many(theirs)
            if any(key is None for key in found.values()):
                # Made elsewhere and gone again already (erased): try again later.
                raise APIError(description="a person's key changed while it was being made")
            keys.update(found)
        return len(made) - len(theirs), keys

    async def _request_all(self, requests: Sequence[Request]) -> list[dict[str, Any]]:
        return await request_all(self._nc or self._js._nc, requests, timeout=self._timeout)

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
        """``envelopes`` with every personal field of every fact sealed under its person's key;
        one naming nobody is returned as it is."""
        sealed = list(envelopes)
        work: list[tuple[int, type[BaseModel], dict[str, Any]]] = []
        people: set[str] = set()
        for index, envelope in enumerate(sealed):
            model = message_model(envelope)
            if model is not None and (emails := _emails(model, envelope.data)):
                work.append((index, model, json.loads(json.dumps(envelope.data))))
                people |= emails
        await self._seal_in_place([(model, data) for _, model, data in work], people)
        for index, _, data in work:
            sealed[index] = sealed[index].model_copy(update={"data": data})
        return sealed

    async def seal_payloads(self, payloads: Sequence[bytes]) -> list[bytes | None]:
        """Each envelope in ``payloads`` (its wire form) with every personal field sealed, or
        None for one that names nobody. The relay's way: from bytes to bytes, without
        validating again what was valid when it was written."""
        work: list[tuple[int, type[BaseModel], dict[str, Any]]] = []
        people: set[str] = set()
        for index, raw in enumerate(payloads):
            document = pydantic_core.from_json(raw)
            model = _fact_model(document.get("type"), document.get("version"))
            if model is not None and (emails := _emails(model, document.get("data"))):
                work.append((index, model, document))
                people |= emails
        await self._seal_in_place(
            [(model, document["data"]) for _, model, document in work], people
        )
        sealed: list[bytes | None] = [None] * len(payloads)
        for index, _, document in work:
            sealed[index] = pydantic_core.to_json(document)
        return sealed

    async def _seal_in_place(
        self, facts: Sequence[tuple[type[BaseModel], Any]], emails: set[str]
    ) -> None:
        """Seal every personal field of each (model, data) under its person's key, in place;
        the keys of everyone named (``emails``) are found or made together first."""
        if not emails:
            return
        people = {email: self.person_id(email) for email in emails}
        keys = await self.keys_for(people.values(), create=True)
        ciphers: dict[str, AESGCM] = {}
        for model, data in facts:
            for part, plan in _walk(model, data):
                owners = {name: part.get(mark.key or name) for name, mark in plan.marked.items()}
                for name in plan.marked:
                    value, owner = part.get(name), owners[name]
                    if value is None or is_sealed(value) or not _sealable_owner(owner):
                        continue
                    pid = people[owner]
                    cipher = ciphers.get(pid)
                    if cipher is None:
                        key = keys[pid]
                        assert key is not None
                        cipher = ciphers[pid] = AESGCM(key)
                    part[name] = _seal_with(cipher, pid, value)

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
        await self.keys_for(wanted, create=False)

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


def _api_prefix(js: JetStreamContext) -> str:
    """The JetStream API subjects' prefix the context was made with ($JS.API, or a domain's)."""
    return str(getattr(js, "_prefix", "$JS.API"))


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
