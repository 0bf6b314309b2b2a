"""The sender: takes due ledger rows, sends each, and records the outcome with its fact.

Rows are claimed in batches before they are sent, so replicas never send the
same row at the same time. Each row's outcome is committed as soon as the mail
server or gateway answers, before that sending slot (one SMTP connection) takes
its next row; outcomes that arrive together share a commit. So a crash re-sends
at most the one message each slot had in flight: accepted by the server but not
yet recorded, it goes again when the claim lapses, with the same Message-ID.
That is as near exactly once as SMTP allows: the protocol has no way to ask a
server whether it already took a message. Everything before that door happens once.

Each provider's rate (``VESTRY_EMAIL_RATE_PER_S``, ``VESTRY_SMS_RATE_PER_S``) is kept
by all the replicas together: every send takes its starting moment from one row per
provider in the store (``SharedPace``). Outcomes and moments go to the store through
one writer per sender (``Writer``), whatever is waiting in one transaction.

A transient failure (SMTP 4xx, a timeout, a gateway 5xx) is tried again after
the configured delays; a permanent one (SMTP 5xx, an invalid number, a
template that cannot render) fails the row at once. Either way a row given up
publishes ``notifications.delivery.failed``. A non-urgent SMS due in quiet
hours is deferred to their end, not dropped, and that costs no attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts.envelope import Envelope, derived_message_id
from contracts.notifications_v1 import DeliveryFailed, DeliverySent
from kernel import outbox
from kernel.outbox import Publisher
from kernel.runtime import Service
from kernel.settings import Settings
from services.notifications import domain, store, wakeup
from services.notifications.documents import DOCUMENT_TEMPLATES, Document, Documents
from services.notifications.failures import PermanentFailure, TransientFailure
from services.notifications.handlers import settle_broadcast
from services.notifications.mailer import Mailer
from services.notifications.mime import PlainMail
from services.notifications.pace import SharedPace, TakeStarts, starts_in_process
from services.notifications.segments import count_segments
from services.notifications.sms import SmsProvider, prepared_text, provider_from
from services.notifications.templates import TemplateProblem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attempt:
    """What became of one attempt at one row."""

    outcome: str  # sent, transient, permanent or deferred
    error: str | None = None
    provider_id: str | None = None
    segments: int | None = None
    until: datetime | None = None


# A claimed row, with the moment its send may start if one was taken with the claim.
Claimed = tuple[store.Delivery, float | None]


@dataclass(frozen=True)
class _Text:
    """An SMS ready to go: to whom, its text, and the parts it takes."""

    to: str
    text: str
    segments: int


def _failed(delivery: store.Delivery, failure: Exception) -> Attempt:
    """The attempt a failure makes: tried again if it may pass, given up if it will not."""
    if isinstance(failure, TransientFailure):
        return Attempt("transient", str(failure))
    if isinstance(failure, PermanentFailure):
        return Attempt("permanent", str(failure))
    # An unforeseen error: worth another try, then given up.
    log.error("delivery %s: unexpected error", delivery.id, exc_info=failure)
    return Attempt("transient", f"{type(failure).__name__}: {failure}")


class Sender:
    """Sends ledger rows by email (SMTP) and SMS (a provider), paced per provider."""

    def __init__(
        self,
        settings: Settings,
        mailer: Mailer | None = None,
        sms: SmsProvider | None = None,
        documents: Documents | None = None,
        sessions: async_sessionmaker[AsyncSession] | None = None,
        wake_relay: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.mailer = mailer or Mailer(settings)
        self.sms = sms or provider_from(settings)
        self.documents = documents
        self.quiet = domain.QuietHours.parse(settings.quiet_hours)
        self.writer = Writer(sessions, settings.delivery_retry_s, wake_relay) if sessions else None
        # Paced through the store when there is one, so that replicas share each rate.
        self.limits = {
            channel: SharedPace(
                self.writer.starts(channel) if self.writer else starts_in_process(), rate
            )
            for channel, rate in (
                ("email", settings.email_rate_per_s),
                ("sms", settings.sms_rate_per_s),
            )
        }

    async def attempt(
        self,
        delivery: store.Delivery,
        after: Awaitable[None] | None = None,
        moment: float | None = None,
    ) -> Attempt:
        """Send ``delivery`` once, at its moment; what became of it.

        Nothing is sent before ``after`` (the slot's last outcome being recorded) is
        done, and its failure is raised; this send's moment is asked for meanwhile, so
        that both go to the store in one round of the writer. ``moment`` is one taken
        with the row's claim, if it was.
        """
        try:
            outgoing = await self._outgoing(delivery)
        except Exception as failure:
            outgoing = _failed(delivery, failure)
        if isinstance(outgoing, Attempt):  # nothing to send now
            if after is not None:
                await after
            return outgoing
        pace = self.limits["sms" if isinstance(outgoing, _Text) else "email"]
        paced = asyncio.ensure_future(pace.wait(moment))
        try:
            if after is not None:
                await after
        except BaseException:
            paced.cancel()
            raise
        try:
            await paced
            if isinstance(outgoing, _Text):
                provider_id = await self.sms.send(outgoing.to, outgoing.text, reference=delivery.id)
                return Attempt("sent", provider_id=provider_id, segments=outgoing.segments)
            await self.mailer.send(outgoing)
            return Attempt("sent")
        except Exception as failure:
            return _failed(delivery, failure)

    async def _outgoing(
        self, delivery: store.Delivery
    ) -> EmailMessage | PlainMail | _Text | Attempt:
        """What goes to the provider, rendered; or, for an SMS due in quiet hours, when."""
        if delivery.channel == "sms":
            return self._sms(delivery)
        return self.mailer.prepare(delivery, await self._documents_of(delivery))

    async def _documents_of(self, delivery: store.Delivery) -> list[Document]:
        """The document an invoice or credit-note email carries, asked for now."""
        if delivery.template not in DOCUMENT_TEMPLATES:
            return []
        number = delivery.template_context.get("number")
        if self.documents is None or not number:
            raise PermanentFailure(f"{delivery.template}: no document to attach")
        return [await self.documents.fetch(str(number))]

    def _sms(self, delivery: store.Delivery) -> _Text | Attempt:
        if not delivery.urgent and self.quiet is not None:
            until = self.quiet.wait_until(datetime.now(UTC))
            if until is not None:
                return Attempt("deferred", until=until)
        try:
            text = self.mailer.templates.sms(delivery.template, delivery.template_context)
        except TemplateProblem as problem:
            raise PermanentFailure(str(problem)) from None
        segments = count_segments(prepared_text(self.sms.name, text)).segments
        return _Text(delivery.recipient, text, segments)

    async def close(self) -> None:
        await self.mailer.close()
        await self.sms.close()


async def run_sender(service: Service) -> None:
    """Keep the slots fed: claim due rows whenever there is room for a slot's worth, and
    when none is due, wait for rows planned here to commit (``wakeup``), or for the
    poll interval to pass (rows planned by another replica, retries coming due)."""
    settings = service.settings
    sender = Sender(
        settings,
        documents=documents_of(service),
        sessions=service.sessions,
        wake_relay=service.wake_relay,
    )
    assert sender.writer is not None
    slots = Slots(sender, sender.writer, settings.send_concurrency)
    most = settings.send_concurrency * CLAIMED_PER_SLOT
    lease = timedelta(seconds=settings.delivery_claim_lease_s)
    planned = asyncio.Event()
    stop_listening = wakeup.listen(planned.set)
    try:
        while True:
            planned.clear()
            room = most - slots.in_hand
            if room < settings.send_concurrency:  # claim again once a slot's worth has gone
                await slots.wait_for_room()
                continue
            claimed: list[Claimed] = []
            try:
                claimed = await sender.writer.claim(room, lease, sender.limits, slots.free)
            except Exception:
                log.exception("sender: could not claim rows; trying again")
            slots.hand(claimed)
            if len(claimed) < room:  # none more due now
                with suppress(TimeoutError):
                    await asyncio.wait_for(planned.wait(), settings.sender_poll_s)
    finally:
        stop_listening()
        await slots.stop()
        await sender.close()


async def send_due(service: Service, sender: Sender | Mailer) -> int:
    """Attempt one batch of due deliveries; returns how many were attempted."""
    if isinstance(sender, Mailer):
        sender = Sender(
            service.settings,
            mailer=sender,
            documents=documents_of(service),
            sessions=service.sessions,
            wake_relay=service.wake_relay,
        )
    settings = service.settings
    writer = sender.writer or Writer(
        service.sessions, settings.delivery_retry_s, service.wake_relay
    )
    claimed = await writer.claim(
        settings.send_concurrency * CLAIMED_PER_SLOT,
        timedelta(seconds=settings.delivery_claim_lease_s),
        sender.limits,
        settings.send_concurrency,
    )
    if not claimed:
        return 0
    slots = Slots(sender, writer, settings.send_concurrency)
    slots.hand(claimed)
    return await slots.drained()


# Rows claimed at once for each sending slot: enough that the slots never wait for a
# claim, few enough that a row is sent long before its claim's lease runs out.
CLAIMED_PER_SLOT = 5


class Slots:
    """Up to ``concurrency`` sending slots (one SMTP connection each), fed with claimed rows.

    A slot sends its rows one after another, each only once the outcome of the one
    before is committed: a crash leaves at most one message per slot sent and not
    recorded. A slot whose outcome cannot be recorded stops, and the rows still
    waiting are left to their claim's lease (the store is away: they go again later).
    """

    def __init__(self, sender: Sender, writer: Writer, concurrency: int) -> None:
        self._sender = sender
        self._writer = writer
        self._concurrency = concurrency
        self._waiting: deque[Claimed] = deque()
        self._running: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()
        self._failure: Exception | None = None
        self.in_hand = 0  # rows handed in and not yet recorded or left
        self.attempted = 0

    @property
    def free(self) -> int:
        """Slots not sending now: as many rows as would go at once."""
        return self._concurrency - len(self._running)

    def hand(self, rows: list[Claimed]) -> None:
        """Send ``rows`` as slots come free, in their order."""
        self._waiting.extend(rows)
        self.in_hand += len(rows)
        while len(self._running) < min(self._concurrency, len(self._waiting)):
            self._running.add(asyncio.ensure_future(self._slot()))

    async def wait_for_room(self) -> None:
        """Return once a row has left this replica's hands."""
        self._room.clear()
        await self._room.wait()

    async def drained(self) -> int:
        """Wait for every row handed in; how many were attempted (deferred ones are not).
        Raises what stopped a slot, if anything did."""
        while self._running:
            await asyncio.gather(*self._running)
        if self._failure is not None:
            raise self._failure
        return self.attempted

    async def stop(self) -> None:
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def _slot(self) -> None:
        try:
            await self._send_in_turn()
        finally:
            # Gone from the count at once, not a loop turn later: rows handed in from
            # now on start a slot of their own.
            self._running.discard(asyncio.current_task())  # type: ignore[arg-type]

    async def _send_in_turn(self) -> None:
        recorded: asyncio.Future[None] | None = None
        while self._waiting or recorded is not None:
            if not self._waiting:  # the last outcome is recorded before the slot ends
                assert recorded is not None
                try:
                    await recorded
                except Exception as failure:
                    self._stopped_by(failure, 0)
                    return
                recorded = None
                continue
            delivery, moment = self._waiting.popleft()
            try:
                result = await self._sender.attempt(delivery, after=recorded, moment=moment)
            except Exception as failure:  # the slot's last outcome is not recorded
                self._stopped_by(failure, 1 + len(self._waiting))
                return
            recorded = asyncio.ensure_future(self._writer.record(delivery, result))
            recorded.add_done_callback(self._left)
            self.attempted += result.outcome != "deferred"

    def _left(self, recorded: asyncio.Future[None]) -> None:
        self.in_hand -= 1
        self._room.set()

    def _stopped_by(self, failure: Exception, left: int) -> None:
        """Stop on ``failure``, leaving ``left`` rows to their claim's lease."""
        log.error("sender: an outcome could not be recorded (%s); slot stopped", failure)
        self._failure = self._failure or failure
        self._waiting.clear()
        self.in_hand -= left
        self._room.set()


def documents_of(service: Service) -> Documents:
    """Documents asked for over the service's own NATS connection."""
    return Documents(lambda: service.nc)


class Writer:
    """The sender's one writer to the store: the outcomes of sends, the starting moments
    of the next ones (``SharedPace``) and the claims of more rows, each round of them
    in one transaction.

    Whatever waits while a round is written goes in the next round, together (group
    commit): a round costs a few statements whatever its size, and the sender's own
    transactions never wait for each other's hold on the store's write lock (on SQLite
    a transaction that finds the lock taken sleeps and tries again, by ever longer
    naps). ``record`` returns once the outcome is committed, so the caller's slot
    sends nothing more until the last thing it sent is recorded.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        delays: list[float],
        wake_relay: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self._delays = delays
        self._wake_relay = wake_relay
        self._clock = clock
        self._outcomes: list[tuple[store.Delivery, Attempt, asyncio.Future[None]]] = []
        self._starts: list[tuple[str, int, float, asyncio.Future[float]]] = []
        self._claims: list[
            tuple[int, timedelta, Mapping[str, SharedPace], int, asyncio.Future[list[Claimed]]]
        ] = []
        self._writing: asyncio.Task[None] | None = None

    async def record(self, delivery: store.Delivery, attempt: Attempt) -> None:
        """Return once the outcome of ``attempt`` at ``delivery`` is committed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outcomes.append((delivery, attempt, done))
        self._write_soon()
        await done

    def starts(self, provider: str) -> TakeStarts:
        """Starting moments for sends to ``provider``, taken in the store the replicas share."""

        async def take(count: int, spacing: float) -> float:
            first: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            self._starts.append((provider, count, spacing, first))
            self._write_soon()
            return await first

        return take

    async def claim(
        self, limit: int, lease: timedelta, paces: Mapping[str, SharedPace], at_once: int
    ) -> list[Claimed]:
        """Up to ``limit`` due rows, claimed for this replica until ``lease`` from now, the
        first ``at_once`` of them with their moments (``paces``: each channel's) taken.

        While one replica sends a row, the others leave it alone; if that replica dies
        mid-send, the row is due again once the lease runs out."""
        claimed: asyncio.Future[list[Claimed]] = asyncio.get_running_loop().create_future()
        self._claims.append((limit, lease, paces, at_once, claimed))
        self._write_soon()
        return await claimed

    async def _claim(
        self,
        session: AsyncSession,
        limit: int,
        lease: timedelta,
        paces: Mapping[str, SharedPace],
        at_once: int,
    ) -> list[Claimed]:
        rows = await store.claim_due(session, limit=limit, lease=lease)
        moments: list[float | None] = [None] * len(rows)
        for channel, pace in paces.items():
            going = [n for n, row in enumerate(rows[:at_once]) if row.channel == channel]
            if going:
                first = await store.take_send_starts(
                    session, channel, len(going), pace.spacing, self._clock
                )
                for place, n in enumerate(going):
                    moments[n] = first + place * pace.spacing
        return list(zip(rows, moments, strict=True))

    def _write_soon(self) -> None:
        if self._writing is None or self._writing.done():
            self._writing = asyncio.ensure_future(self._write())

    async def _write(self) -> None:
        while self._outcomes or self._starts or self._claims:
            outcomes, self._outcomes = self._outcomes, []
            starts, self._starts = self._starts, []
            claims, self._claims = self._claims, []
            futures: list[asyncio.Future[Any]] = [done for *_, done in outcomes]
            futures += [first for *_, first in starts]
            futures += [claimed for *_, claimed in claims]
            try:
                async with self._sessions() as session, session.begin():
                    wake = await _record(session, [(d, a) for d, a, _ in outcomes], self._delays)
                    firsts = [
                        await store.take_send_starts(session, provider, count, spacing, self._clock)
                        for provider, count, spacing, _ in starts
                    ]
                    taken = [
                        await self._claim(session, limit, lease, paces, at_once)
                        for limit, lease, paces, at_once, _ in claims
                    ]
            except Exception as error:  # rows stay claimed (tried again when it lapses)
                for future in futures:
                    if not future.done():  # its sender may have been cancelled meanwhile
                        future.set_exception(error)
                continue
            if wake:
                self._wake_relay()
            for _, _, done in outcomes:
                if not done.done():
                    done.set_result(None)
            for (*_, first), moment in zip(starts, firsts, strict=True):
                if not first.done():  # a send cancelled meanwhile leaves its moments unused
                    first.set_result(moment)
            for (*_, claimed), rows in zip(claims, taken, strict=True):
                if not claimed.done():  # cancelled meanwhile: its rows wait for their lease
                    claimed.set_result(rows)


async def _record(
    session: AsyncSession, results: list[tuple[store.Delivery, Attempt]], delays: list[float]
) -> bool:
    """Each row's outcome, its fact, and any broadcast this settles, in a few statements
    however many rows there are. Whether the relay should publish at once: a broadcast
    was just completed. The fact of each row's outcome can wait for the relay's next
    look: waking it for each would cost a transaction or two for every few rows."""
    if not results:
        return False
    rows = {
        row.id: row
        for row in await store.outcome_rows(session, [claimed.id for claimed, _ in results])
    }
    settled: list[store.Settling] = []
    facts: list[tuple[Envelope, str]] = []
    touched: set[str] = set()
    for claimed, attempt in results:
        row = rows.get(claimed.id)
        if row is None or row.status not in store.OPEN:
            continue
        if row.claim != claimed.claim:  # the lease ran out and another replica took it
            continue
        fact = _outcome(row, attempt, delays)
        settled.append(row)
        if fact is not None:
            # One fact per outcome: a resent row's next outcome is another fact.
            fact_id = derived_message_id("delivery", row.id, "outcome", str(row.attempts))
            facts.append((Envelope.wrap(fact, id=fact_id), fact.SUBJECT))
            if row.broadcast_id:
                touched.add(row.broadcast_id)
    await store.record_outcomes(session, settled)
    await outbox.add_many(session, facts)
    publish = Publisher(session)
    for broadcast_id in sorted(touched):
        await settle_broadcast(session, broadcast_id, publish)
    return bool(publish.published)


def _outcome(
    delivery: store.Delivery | store.Settling, attempt: Attempt, delays: list[float]
) -> DeliverySent | DeliveryFailed | None:
    """Update the row after an attempt; the fact to publish, if the row is settled."""
    now = datetime.now(UTC)
    delivery.claim = None
    if attempt.outcome == "deferred":
        assert attempt.until is not None
        delivery.status, delivery.next_attempt_at = "deferred", attempt.until
        return None
    delivery.attempts += 1
    if attempt.outcome == "sent":
        delivery.status, delivery.sent_at = "sent", now
        delivery.provider_id, delivery.segments = attempt.provider_id, attempt.segments
        return DeliverySent(
            delivery_id=delivery.id,
            cause_id=delivery.cause_id,
            channel=delivery.channel,  # type: ignore[arg-type]
            template=delivery.template,
            attempts=delivery.attempts,
            provider_id=attempt.provider_id,
            segments=attempt.segments,
        )
    error = attempt.error or attempt.outcome
    delivery.last_error = error
    # A mail server names the address it refused; the log and the fact (kept in a
    # stream for good and sealed for nobody) must not.
    public_error = domain.without_addresses(error, [delivery.recipient]) or error
    tried = delivery.attempts - delivery.attempts_before_resend
    delay = domain.retry_delay(tried, delays) if attempt.outcome == "transient" else None
    if delay is not None:
        delivery.status = "pending"
        delivery.next_attempt_at = now + timedelta(seconds=delay)
        log.warning(
            "delivery %s failed (%s); next attempt in %.1fs", delivery.id, public_error, delay
        )
        return None
    delivery.status = "failed"
    log.error(
        "delivery %s given up after %d attempts: %s", delivery.id, delivery.attempts, public_error
    )
    return DeliveryFailed(
        delivery_id=delivery.id,
        cause_id=delivery.cause_id,
        channel=delivery.channel,  # type: ignore[arg-type]
        template=delivery.template,
        attempts=delivery.attempts,
        error=public_error[:1000],
    )
