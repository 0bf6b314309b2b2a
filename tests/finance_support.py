"""Helpers for the tests of closing the books: a clock a test moves, and facts read back."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from nats.aio.client import Client
from nats.js.errors import NotFoundError

from contracts.money import Money
from contracts.subscriptions_v1 import RecordPayment, ShowInvoice
from kernel.commands import request
from tests.sealed import opened


class Clock:
    """The service's clock, set to a London working day (10:00) and moved by the test.

    Each reading is a millisecond after the last, so records made one after another
    (runs listed newest first, say) keep their order."""

    def __init__(self, day: date) -> None:
        self.now = datetime.combine(day, time(10), UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now

    def on(self, day: date) -> None:
        self.now = datetime.combine(day, time(10), UTC)

    def later(self, days: int) -> None:
        self.now += timedelta(days=days)


async def facts_on(nc: Client, subject: str) -> list[dict[str, Any]]:
    """The data of every fact on ``subject`` in the SUBSCRIPTIONS stream, oldest first."""
    js = nc.jetstream()
    info = await js.stream_info("SUBSCRIPTIONS")
    found: list[dict[str, Any]] = []
    if not info.state.messages:  # an empty stream's first sequence is 0: nothing to ask for
        return found
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg("SUBSCRIPTIONS", seq)
        except NotFoundError:
            continue
        if msg.subject == subject:
            found.append((await opened(nc, msg.data)).data)
    return found


async def invoice_of(nc: Client, member: str, invoices: list[dict[str, Any]]) -> dict[str, Any]:
    """The full document of ``member``'s only invoice among ``invoices``."""
    (number,) = [i["number"] for i in invoices if i["billed_name"] == member]
    return await request(nc, ShowInvoice(number=number))


def pay(number: str, pence: int, on: date, reference: str | None = None) -> RecordPayment:
    return RecordPayment(
        invoice=number, amount=Money(amount_minor=pence), received_on=on, reference=reference
    )
