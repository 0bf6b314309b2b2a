"""The sender: takes due ledger rows, sends each, and records the outcome with its fact.

Rows are claimed in batches before they are sent, so replicas never send the
same row at the same time. Each row's outcome is committed as soon as the mail
server or gateway answers, before that sending slot (one SMTP connection) takes
its next row; outcomes that arrive together share a commit. So a crash re-sends
at most the one message each slot had in flight: accepted by the server but not
yet recorded, it goes again when the claim lapses, with the same Message-ID.
That is as near exactly once as SMTP allows: the protocol has no way to ask a
server whether it already took a message. Everything before that door happens once.

A transient failure (SMTP 4xx, a timeout, a gateway 5xx) is tried again after
the configured delays; a permanent one (SMTP 5xx, an invalid number, a
template that cannot render) fails the row at once. Either way a row given up
publishes ``notifications.delivery.failed``. A non-urgent SMS due in quiet
hours is deferred to their end, not dropped, and that costs no attempt.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from contracts.envelope import derived_message_id
from contracts.notifications_v1 import DeliveryFailed, DeliverySent
from kernel.outbox import Publisher
from kernel.runtime import Service
from kernel.settings import Settings
from services.notifications import domain, store
from services.notifications.failures import PermanentFailure, TransientFailure
from services.notifications.handlers import settle_broadcast
from services.notifications.mailer import Mailer
from services.notifications.segments import count_segments
from services.notifications.sms import SmsProvider, prepared_text, provider_from
from services.notifications.templates import TemplateProblem

log = logging.getLogger(__name__)


class RateLimit:
    """At most ``per_second`` starts a second, spread evenly, shared by concurrent senders."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second
        self._next = 0.0

    async def wait(self) -> None:
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


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
        self, settings: Settings, mailer: Mailer | None = None, sms: SmsProvider | None = None
    ) -> None:
        self.settings = settings
        self.mailer = mailer or Mailer(settings)
        self.sms = sms or provider_from(settings)
        self.quiet = domain.QuietHours.parse(settings.quiet_hours)
        self.limits = {
            "email": RateLimit(settings.email_rate_per_s),
            "sms": RateLimit(settings.sms_rate_per_s),
        }

    async def attempt(self, delivery: store.Delivery) -> Attempt:
        try:
            if delivery.channel == "sms":
                return await self._sms(delivery)
            message = self.mailer.compose(delivery)
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
    sender = Sender(service.settings)
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
        sender = Sender(service.settings, mailer=sender)
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
