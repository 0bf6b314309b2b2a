"""The sender: takes due ledger rows, sends each, and records the outcome with its fact.

Each row is claimed before it is sent, so replicas never send the same row at
the same time. Sending is at least once at the mail server's door: a crash
after the server accepted a message and before the row is marked sends it
again when the claim lapses, with the same Message-ID. Everything before that
door happens once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from contracts.envelope import derived_message_id
from contracts.notifications_v1 import DeliveryFailed, DeliverySent
from kernel.outbox import Publisher
from kernel.runtime import Service
from services.notifications import domain, store
from services.notifications.mailer import Mailer

log = logging.getLogger(__name__)

# While one replica sends a row, the others leave it alone; if that replica
# dies mid-send, the row is due again once the lease runs out.
CLAIM_LEASE = timedelta(minutes=5)


async def run_sender(service: Service, *, poll_interval: float = 0.3) -> None:
    mailer = Mailer(service.settings)
    while True:
        try:
            sent = await send_due(service, mailer)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sender: a round failed; trying again")
            sent = 0
        if not sent:
            await asyncio.sleep(poll_interval)


async def send_due(service: Service, mailer: Mailer) -> int:
    """Attempt every due delivery once; returns how many were attempted."""
    async with service.sessions() as session:
        due = await store.due_deliveries(session)
    attempted = 0
    for delivery in due:
        async with service.sessions() as session, session.begin():
            claimed = await store.claim_delivery(session, delivery, lease=CLAIM_LEASE)
        if not claimed:  # another replica took it
            continue
        attempted += 1
        error: str | None = None
        try:
            await mailer.send(mailer.compose(delivery))
        except Exception as failure:
            error = f"{type(failure).__name__}: {failure}"
        await _record(service, delivery.id, error)
    return attempted


async def _record(service: Service, delivery_id: str, error: str | None) -> None:
    async with service.sessions() as session, session.begin():
        delivery = await session.get(store.Delivery, delivery_id)
        if delivery is None or delivery.status != "pending":
            return
        delivery.attempts += 1
        fact = _outcome(delivery, error)
        if fact is not None:
            await Publisher(session)(
                fact, id=derived_message_id("delivery", delivery.id, "outcome")
            )
    service.wake_relay()


def _outcome(delivery: store.Delivery, error: str | None) -> DeliverySent | DeliveryFailed | None:
    """Update the row after an attempt; the fact to publish, if the row is settled."""
    now = datetime.now(UTC)
    if error is None:
        delivery.status, delivery.sent_at = "sent", now
        return DeliverySent(
            delivery_id=delivery.id,
            cause_id=delivery.cause_id,
            channel=delivery.channel,
            template=delivery.template,
            attempts=delivery.attempts,
        )
    delivery.last_error = error
    delay = domain.retry_delay(delivery.attempts)
    if delay is not None:
        delivery.next_attempt_at = now + timedelta(seconds=delay)
        log.warning("delivery %s failed (%s); next attempt in %.0fs", delivery.id, error, delay)
        return None
    delivery.status = "failed"
    return DeliveryFailed(
        delivery_id=delivery.id,
        cause_id=delivery.cause_id,
        channel=delivery.channel,
        template=delivery.template,
        attempts=delivery.attempts,
        error=error[:1000],
    )
