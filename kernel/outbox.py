"""The outbox: facts written in the state change's transaction, and the relay that
publishes them to JetStream with ``Nats-Msg-Id`` set to the message id."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts import Envelope, Message
from kernel import inbox
from kernel.personal import Keyring
from kernel.store import answers_table, outbox_table

log = logging.getLogger(__name__)


async def add(session: AsyncSession, envelope: Envelope, subject: str) -> None:
    """Queue ``envelope`` for publication; it leaves only if the transaction commits."""
    await add_many(session, [(envelope, subject)])


async def add_many(session: AsyncSession, facts: list[tuple[Envelope, str]]) -> None:
    """Queue many (envelope, subject) pairs in one statement; they leave only if it commits.

    Personal fields are written as they are: the relay seals them when it publishes
    (``OutboxRelay``), so a command needs no more than the store, even while the bus
    is down.
    """
    if not facts:
        return
    now = datetime.now(UTC)
    await session.execute(
        outbox_table.insert(),
        [
            {
                "id": envelope.id,
                "subject": subject,
                "payload": envelope.to_bytes(),
                "created_at": now,
            }
            for envelope, subject in facts
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
                self._wake.clear()
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
        envelopes = [Envelope.from_bytes(row.payload) for row in pending]
        sealed = await self._keyring.seal(envelopes)
        return [
            row if new is old else Pending(row.id, row.subject, new.to_bytes())
            for row, old, new in zip(pending, envelopes, sealed, strict=True)
        ]

    async def next_batch(self) -> list[Pending]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(outbox_table.c.id, outbox_table.c.subject, outbox_table.c.payload)
                .where(outbox_table.c.sent_at.is_(None))
                .order_by(outbox_table.c.seq)
                .limit(self._batch)
            )
            return [Pending(*row) for row in rows]

    async def publish(self, pending: list[Pending]) -> None:
        """Publish every row and wait until JetStream has stored each (or says it is a duplicate)."""
        futures = [
            await self._js.publish_async(row.subject, row.payload, headers={"Nats-Msg-Id": row.id})
            for row in pending
        ]
        try:
            await asyncio.wait_for(asyncio.gather(*futures), self._ack_timeout)
        finally:
            for future in futures:
                future.cancel()

    async def mark_sent(self, ids: list[str], resealed: Sequence[Pending] = ()) -> None:
        """Mark ``ids`` sent; a row that was sealed to leave keeps only its sealed form,
        so no published row holds a person's details in clear."""
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(outbox_table)
                .where(outbox_table.c.id.in_(ids))
                .values(sent_at=datetime.now(UTC))
            )
            if resealed:
                await session.execute(
                    update(outbox_table)
                    .where(outbox_table.c.id == bindparam("row_id"))
                    .values(payload=bindparam("sealed")),
                    [{"row_id": row.id, "sealed": row.payload} for row in resealed],
                )
