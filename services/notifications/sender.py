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
provider in the store (``SharedPace``).

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts.envelope import derived_message_id
from contracts.notifications_v1 import DeliveryFailed, DeliverySent
from kernel.outbox import Publisher
from kernel.runtime import Service
from kernel.settings import Settings
from services.notifications import domain, store
from services.notifications.documents import DOCUMENT_TEMPLATES, Document, Documents
from services.notifications.failures import PermanentFailure, TransientFailure
from services.notifications.handlers import settle_broadcast
from services.notifications.mailer import Mailer
from services.notifications.segments import count_segments
from services.notifications.sms import SmsProvider, prepared_text, provider_from
from services.notifications.templates import TemplateProblem

log = logging.getLogger(__name__)


# A provider's rate is kept with a margin: ``per_second`` starts take 1 + MARGIN_S
# seconds, not one. A start may come up to LATE_S after its moment (a busy event loop),
# and a message may take a little more or less time to reach the provider than the
# one before; the margin absorbs both, so a provider counting what it receives in any
# one second by its own clock never counts more than the rate. A start later than
# LATE_S gives its moment up and takes a new one: sends delayed together never go
# out together.
MARGIN_S = 0.1
LATE_S = 0.05

TakeStarts = Callable[[int, float], Awaitable[float]]  # (how many, spacing) -> first


class SharedPace:
    """At most ``per_second`` sends a second to one provider from every replica together.

    Each send waits for a starting moment of its own, taken from the store
    (``store.take_send_starts``: one row per provider, moved on atomically), so the
    replicas' moments never overlap however many there are. Sends waiting at once in
    one replica take their moments in one transaction. The moments are wall-clock
    time: replicas on several hosts need clocks that agree to well within LATE_S.
    """

    def __init__(
        self, take: TakeStarts, per_second: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.spacing = (1.0 + MARGIN_S) / per_second
        self._take = take
        self._clock = clock
        self._waiting: list[asyncio.Future[float]] = []
        self._taking: asyncio.Task[None] | None = None

    async def wait(self) -> None:
        """Return at this send's moment, never before it and at most LATE_S after it."""
        while True:
            start = await self._start()
            delay = start - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._clock() - start <= LATE_S:
                return

    async def _start(self) -> float:
        moment: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting.append(moment)
        if self._taking is None or self._taking.done():
            self._taking = asyncio.ensure_future(self._take_for_waiting())
        return await moment

    async def _take_for_waiting(self) -> None:
        while self._waiting:
            waiting, self._waiting = self._waiting, []
            try:
                first = await self._take(len(waiting), self.spacing)
            except Exception as error:  # the store is away: those sends fail, and retry
                for moment in waiting:
                    if not moment.done():
                        moment.set_exception(error)
                continue
            for n, moment in enumerate(waiting):
                if not moment.done():  # a send cancelled meanwhile leaves its moment unused
                    moment.set_result(first + n * self.spacing)


def starts_in_store(
    sessions: async_sessionmaker[AsyncSession],
    provider: str,
    clock: Callable[[], float] = time.time,
) -> TakeStarts:
    """Starting moments for sends to ``provider`` from the store the replicas share."""

    async def take(count: int, spacing: float) -> float:
        async with sessions() as session, session.begin():
            return await store.take_send_starts(session, provider, count, spacing, clock)

    return take


def starts_in_process(clock: Callable[[], float] = time.time) -> TakeStarts:
    """Starting moments kept in this process alone: for a sender without a store."""
    next_start = 0.0

    async def take(count: int, spacing: float) -> float:
        nonlocal next_start
        first = max(next_start, clock())
        next_start = first + count * spacing
        return first

    return take


@dataclass(frozen=True)
class Attempt:
    """What became of one attempt at one row."""

    outcome: str  # sent, transient, permanent or deferred
    error: str | None = None
    provider_id: str | None = None
    segments: int | None = None
    until: datetime | None = None


class Sender:
    """Sends ledger rows by email (SMTP) and SMS (a provider), paced per provider."""

    def __init__(
        self,
        settings: Settings,
        mailer: Mailer | None = None,
        sms: SmsProvider | None = None,
        documents: Documents | None = None,
        sessions: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self.settings = settings
        self.mailer = mailer or Mailer(settings)
        self.sms = sms or provider_from(settings)
        self.documents = documents
        self.quiet = domain.QuietHours.parse(settings.quiet_hours)
        # Paced through the store when there is one, so that replicas share each rate.
        self.limits = {
            channel: SharedPace(
                starts_in_store(sessions, channel) if sessions else starts_in_process(), rate
            )
            for channel, rate in (
                ("email", settings.email_rate_per_s),
                ("sms", settings.sms_rate_per_s),
            )
        }

    async def attempt(self, delivery: store.Delivery) -> Attempt:
        try:
            if delivery.channel == "sms":
                return await self._sms(delivery)
            message = self.mailer.compose(delivery, await self._documents_of(delivery))
            await self.limits["email"].wait()
            await self.mailer.send(message)
            return Attempt("sent")
        except TransientFailure as failure:
            return Attempt("transient", str(failure))
        except PermanentFailure as failure:
            return Attempt("permanent", str(failure))
        except Exception as failure:  # an unforeseen error: worth another try, then given up
            log.exception("delivery %s: unexpected error", delivery.id)
            return Attempt("transient", f"{type(failure).__name__}: {failure}")

    async def _documents_of(self, delivery: store.Delivery) -> list[Document]:
        """The document an invoice or credit-note email carries, asked for now."""
        if delivery.template not in DOCUMENT_TEMPLATES:
            return []
        number = delivery.template_context.get("number")
        if self.documents is None or not number:
            raise PermanentFailure(f"{delivery.template}: no document to attach")
        return [await self.documents.fetch(str(number))]

    async def _sms(self, delivery: store.Delivery) -> Attempt:
        if not delivery.urgent and self.quiet is not None:
            until = self.quiet.wait_until(datetime.now(UTC))
            if until is not None:
                return Attempt("deferred", until=until)
        try:
            text = self.mailer.templates.sms(delivery.template, delivery.template_context)
        except TemplateProblem as problem:
            raise PermanentFailure(str(problem)) from None
        segments = count_segments(prepared_text(self.sms.name, text)).segments
        await self.limits["sms"].wait()
        provider_id = await self.sms.send(delivery.recipient, text, reference=delivery.id)
        return Attempt("sent", provider_id=provider_id, segments=segments)

    async def close(self) -> None:
        await self.mailer.close()
        await self.sms.close()


async def run_sender(service: Service) -> None:
    sender = Sender(service.settings, documents=documents_of(service), sessions=service.sessions)
    poll_interval = service.settings.sender_poll_s
    try:
        while True:
            try:
                sent = await send_due(service, sender)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sender: a round failed; trying again")
                sent = 0
            if not sent:
                await asyncio.sleep(poll_interval)
    finally:
        await sender.close()


async def send_due(service: Service, sender: Sender | Mailer) -> int:
    """Attempt one batch of due deliveries; returns how many were attempted."""
    if isinstance(sender, Mailer):
        sender = Sender(
            service.settings,
            mailer=sender,
            documents=documents_of(service),
            sessions=service.sessions,
        )
    settings = service.settings
    async with service.sessions() as session, session.begin():
        # While one replica sends a row, the others leave it alone; if that replica
        # dies mid-send, the row is due again once the lease runs out.
        claimed = await store.claim_due(
            session,
            limit=settings.send_concurrency * 5,
            lease=timedelta(seconds=settings.delivery_claim_lease_s),
        )
    if not claimed:
        return 0
    gate = asyncio.Semaphore(settings.send_concurrency)
    recorder = Recorder(service)

    async def attempt(delivery: store.Delivery) -> Attempt:
        async with gate:  # the slot is held until the outcome is committed
            result = await sender.attempt(delivery)
            await recorder.record(delivery, result)
            return result

    attempts = await asyncio.gather(*(attempt(delivery) for delivery in claimed))
    return sum(1 for a in attempts if a.outcome != "deferred")


def documents_of(service: Service) -> Documents:
    """Documents asked for over the service's own NATS connection."""
    return Documents(lambda: service.nc)


class Recorder:
    """Commits outcomes as they come, grouping those that arrive together (group commit).

    ``record`` returns once the outcome is in the store, so the caller's slot sends
    nothing more until the last thing it sent is recorded.
    """

    def __init__(self, service: Service) -> None:
        self._service = service
        self._waiting: list[tuple[store.Delivery, Attempt, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def record(self, delivery: store.Delivery, attempt: Attempt) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((delivery, attempt, done))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self._flush())
        await done

    async def _flush(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                await _record(self._service, [(d, a) for d, a, _ in batch])
            except Exception as error:  # the rows stay claimed: tried again when it lapses
                for _, _, done in batch:
                    if not done.done():  # its sender may have been cancelled meanwhile
                        done.set_exception(error)
            else:
                for _, _, done in batch:
                    if not done.done():
                        done.set_result(None)


async def _record(service: Service, results: list[tuple[store.Delivery, Attempt]]) -> None:
    """Each row's outcome, its fact, and any broadcast this settles, in one transaction."""
    delays = service.settings.delivery_retry_s
    async with service.sessions() as session, session.begin():
        publish = Publisher(session)
        touched: set[str] = set()
        rows = {
            row.id: row
            for row in await session.scalars(
                select(store.Delivery).where(store.Delivery.id.in_([c.id for c, _ in results]))
            )
        }
        for claimed, attempt in results:
            delivery = rows.get(claimed.id)
            if delivery is None or delivery.status not in store.OPEN:
                continue
            if delivery.claim != claimed.claim:  # the lease ran out and another replica took it
                continue
            fact = _outcome(delivery, attempt, delays)
            if fact is not None:
                # One fact per outcome: a resent row's next outcome is another fact.
                fact_id = derived_message_id(
                    "delivery", delivery.id, "outcome", str(delivery.attempts)
                )
                await publish(fact, id=fact_id)
                if delivery.broadcast_id:
                    touched.add(delivery.broadcast_id)
        for broadcast_id in sorted(touched):
            await settle_broadcast(session, broadcast_id, publish)
    service.wake_relay()


def _outcome(
    delivery: store.Delivery, attempt: Attempt, delays: list[float]
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
