"""The outbox: facts written in the state change's transaction, and the relay that
publishes them to JetStream with ``Nats-Msg-Id`` set to the message id."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pydantic_core
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.errors import APIError
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts import Envelope, Message
from kernel import inbox
from kernel.store import READS_ONLY, answers_table, outbox_table

if TYPE_CHECKING:
    from kernel.personal import Keyring

log = logging.getLogger(__name__)

# A request to JetStream: subject, payload and headers (a publish to a stream, or an API call).
Request = tuple[str, bytes, dict[str, str] | None]
# Requests awaiting their answers at once: enough to keep the server busy through a
# batch, few enough not to flood it.
IN_FLIGHT = 1000


async def add(session: AsyncSession, envelope: Envelope, subject: str) -> None:
    """Queue ``envelope`` for publication; it leaves only if the transaction commits."""
    await add_many(session, [(envelope, subject)])


async def add_many(session: AsyncSession, facts: list[tuple[Envelope, str]]) -> None:
    """Queue many (envelope, subject) pairs in one statement; they leave only if it commits.

    Personal fields are written as they are: the relay seals them when it publishes
    (``OutboxRelay``), so a command needs no more than the store, even while the bus
    is down.
    """
    await add_payloads(
        session, [(envelope.id, subject, envelope.to_bytes()) for envelope, subject in facts]
    )


async def add_payloads(session: AsyncSession, facts: Sequence[tuple[str, str, bytes]]) -> None:
    """Queue many (message id, subject, envelope's wire form) in one statement, like
    ``add_many``: for a bulk writer that makes thousands of envelopes' bytes itself."""
    if not facts:
        return
    now = datetime.now(UTC)
    await session.execute(
        outbox_table.insert(),
        [
            {"id": message_id, "subject": subject, "payload": payload, "created_at": now}
            for message_id, subject, payload in facts
        ],
    )


class Publisher:
    """What a handler publishes through: facts land in the outbox of the open transaction."""

    def __init__(self, session: AsyncSession, causation: Envelope | None = None) -> None:
        self._session = session
        self._causation = causation
        self.published: list[Envelope] = []

    async def __call__(self, message: Message, *, id: str | None = None) -> Envelope:
        envelope = Envelope.wrap(message, id=id, causation=self._causation)
        await add(self._session, envelope, message.SUBJECT)
        self.published.append(envelope)
        return envelope


async def unsent_count(session: AsyncSession) -> int:
    return (
        await session.scalar(
            select(func.count()).select_from(outbox_table).where(outbox_table.c.sent_at.is_(None))
        )
        or 0
    )


async def request_all(
    nc: Client, requests: Sequence[Request], *, timeout: float, in_flight: int = IN_FLIGHT
) -> list[dict[str, Any]]:
    """Send every request at once (at most ``in_flight`` unanswered) and return JetStream's
    answers (a PubAck or an API response, as JSON) in order. Raises TimeoutError when no
    answer has come for ``timeout`` seconds, NoRespondersError when nothing listens.

    One reply subscription for them all: an answer costs a callback, where nats-py's
    ``publish_async`` or ``request`` costs a future, a semaphore and a timer each (the
    relay spent more on those than on sealing).
    """
    if not requests:
        return []
    loop = asyncio.get_running_loop()
    inbox = nc.new_inbox()
    answers: list[Msg | None] = [None] * len(requests)
    waiting = len(requests)
    all_in = loop.create_future()
    room = asyncio.Semaphore(in_flight)
    async with asyncio.timeout(timeout) as deadline:

        async def take(msg: Msg) -> None:
            nonlocal waiting
            index = msg.subject.rsplit(".", 1)[-1]
            if not index.isdigit() or int(index) >= len(answers) or answers[int(index)] is not None:
                return
            answers[int(index)] = msg
            room.release()
            now = loop.time()
            if now + timeout - (deadline.when() or now) > timeout / 8:  # not at every answer
                deadline.reschedule(now + timeout)
            waiting -= 1
            if not waiting:
                all_in.set_result(None)

        subscription = await nc.subscribe(f"{inbox}.*", cb=take)
        try:
            for index, (subject, payload, headers) in enumerate(requests):
                await room.acquire()
                await nc.publish(subject, payload, reply=f"{inbox}.{index}", headers=headers)
            await all_in
        finally:
            with suppress(NatsError):  # the connection went: the error that says so is raised
                await subscription.unsubscribe()
    return [_json_answer(answer) for answer in answers if answer is not None]


def _json_answer(msg: Msg) -> dict[str, Any]:
    """JetStream's answer as JSON; a bare status (no stream or API there) becomes an error."""
    if not msg.data and msg.headers and msg.headers.get("Status"):
        if msg.headers["Status"] == "503":
            raise NoRespondersError
        status = {"code": int(msg.headers["Status"]), "description": msg.headers.get("Description")}
        return {"error": status}
    answer = pydantic_core.from_json(msg.data)
    if not isinstance(answer, dict):
        raise APIError(description=f"unexpected answer from JetStream: {msg.data[:100]!r}")
    return answer


@dataclass(frozen=True)
class Pending:
    id: str
    subject: str
    payload: bytes


class OutboxRelay:
    """Publishes unsent outbox rows in order, in batches, and marks them sent.

    A crash between publishing and marking only means the rows are published
    again: JetStream drops the copies by ``Nats-Msg-Id`` within its duplicate
    window, and consumers' inboxes drop any that get through. A NATS outage
    leaves the rows unsent; the relay retries with backoff until it returns.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        js: JetStreamContext,
        *,
        batch: int = 500,
        poll_interval: float = 0.5,
        ack_timeout: float = 5.0,
        max_backoff: float = 5.0,
        keep_sent_s: float | None = None,
        keep_handled_s: float | None = None,
        keep_answers_s: float | None = None,
        keyring: Keyring | None = None,
        tidy_every_s: float = 60.0,
    ) -> None:
        self._sessions = sessions
        self._js = js
        self._batch = batch
        self._poll_interval = poll_interval
        self._ack_timeout = ack_timeout
        self._max_backoff = max_backoff
        self._wake = asyncio.Event()
        self.published = 0
        self._keyring = keyring
        self._keep_sent_s = keep_sent_s
        self._keep_handled_s = keep_handled_s
        self._keep_answers_s = keep_answers_s
        self._tidy_every_s = tidy_every_s
        self._tidied_at = 0.0

    def wake(self) -> None:
        """Say that a transaction just committed facts, so the relay need not wait for its poll."""
        self._wake.set()

    async def run(self) -> None:
        backoff = 0.1
        while True:
            # Cleared before looking, not after: a commit's wake that comes while a batch
            # is out (or while tidying) is not lost to the poll interval.
            self._wake.clear()
            try:
                relayed = await self.relay_once()
                await self._tidy_now_and_then()
                backoff = 0.1
            except Exception as error:  # NATS down, timeouts, a store hiccup: try again later
                log.warning(
                    "outbox relay: %s; retrying in %.1fs", error or type(error).__name__, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            if relayed < self._batch:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_interval)

    async def _tidy_now_and_then(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._tidied_at >= self._tidy_every_s:
            self._tidied_at = now
            await self.tidy()

    async def tidy(self) -> tuple[int, int, int]:
        """Delete outbox rows published longer ago than ``keep_sent_s``, inbox rows
        handled longer ago than ``keep_handled_s`` and command answers given longer ago
        than ``keep_answers_s`` (None keeps them); returns the three counts.

        A published row is needed only until JetStream has it: its copy there is the
        fact, and JetStream drops a re-publication by id within its duplicate window,
        which ``keep_sent_s`` should exceed. An inbox row is what stops a replay
        applying a message twice, so it is kept for as far back as replays may reach.
        An answer is what a client retrying a command gets instead of a second effect
        (``kernel.commands``); past its retention the same id runs as a new command.
        """
        now = datetime.now(UTC)
        sent = handled = answered = 0
        async with self._sessions() as session, session.begin():
            if self._keep_sent_s is not None:
                result = await session.execute(
                    delete(outbox_table).where(
                        outbox_table.c.sent_at < now - timedelta(seconds=self._keep_sent_s)
                    )
                )
                sent = result.rowcount or 0  # type: ignore[attr-defined]
            if self._keep_handled_s is not None:
                handled = await inbox.forget_before(
                    session, now - timedelta(seconds=self._keep_handled_s)
                )
            if self._keep_answers_s is not None:
                result = await session.execute(
                    delete(answers_table).where(
                        answers_table.c.answered_at < now - timedelta(seconds=self._keep_answers_s)
                    )
                )
                answered = result.rowcount or 0  # type: ignore[attr-defined]
        return sent, handled, answered

    async def relay_once(self) -> int:
        """Publish one batch of unsent rows and mark them sent; returns how many."""
        pending = await self.next_batch()
        if not pending:
            return 0
        sealed = await self.seal(pending)
        await self.publish(sealed)
        await self.mark_sent(
            [row.id for row in sealed],
            resealed=[new for new, old in zip(sealed, pending, strict=True) if new is not old],
        )
        self.published += len(pending)
        return len(pending)

    async def seal(self, pending: list[Pending]) -> list[Pending]:
        """The rows as they may leave: each personal field sealed under its person's key
        (``kernel.personal``). A row naming nobody is returned as it is."""
        if self._keyring is None:
            return pending
        sealed = await self._keyring.seal_payloads([row.payload for row in pending])
        return [
            row if new is None else Pending(row.id, row.subject, new)
            for row, new in zip(pending, sealed, strict=True)
        ]

    async def next_batch(self) -> list[Pending]:
        async with self._sessions() as session:
            # A read: on SQLite it need not wait for (nor hold up) the writer, say a run's chunk.
            await session.connection(execution_options={READS_ONLY: True})
            rows = await session.execute(
                select(outbox_table.c.id, outbox_table.c.subject, outbox_table.c.payload)
                .where(outbox_table.c.sent_at.is_(None))
                .order_by(outbox_table.c.seq)
                .limit(self._batch)
            )
            return [Pending(*row) for row in rows]

    async def publish(self, pending: list[Pending]) -> None:
        """Publish every row and wait until JetStream has stored each (or says it is a duplicate)."""
        answers = await request_all(
            self._js._nc,
            [(row.subject, row.payload, {"Nats-Msg-Id": row.id}) for row in pending],
            timeout=self._ack_timeout,
        )
        for answer in answers:
            if "error" in answer:
                APIError.from_error(answer["error"])  # raises

    async def mark_sent(self, ids: list[str], resealed: Sequence[Pending] = ()) -> None:
        """Mark ``ids`` sent; a row that was sealed to leave keeps only its sealed form,
        so no published row holds a person's details in clear."""
        now = datetime.now(UTC)
        sealed = {row.id for row in resealed}
        plain = [row_id for row_id in ids if row_id not in sealed]
        async with self._sessions() as session, session.begin():
            if plain:
                await session.execute(
                    update(outbox_table).where(outbox_table.c.id.in_(plain)).values(sent_at=now)
                )
            if resealed:
                await session.execute(
                    update(outbox_table)
                    .where(outbox_table.c.id == bindparam("row_id"))
                    .values(sent_at=now, payload=bindparam("sealed")),
                    [{"row_id": row.id, "sealed": row.payload} for row in resealed],
                )
