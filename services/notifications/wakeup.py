"""Waking the sender when deliveries are planned, once their transaction commits.

An idle sender looks for due rows every ``sender_poll_s``; a booking's email would
wait up to that long for no reason. A transaction that plans rows asks to ring on
commit (``on_commit``), and every sender in this process wakes then: not before,
when it would find nothing yet, and not for a transaction rolled back.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

_PLANNED = "notifications.planned"
_LISTENING = "notifications.listening"
_senders: set[Callable[[], None]] = set()


def listen(wake: Callable[[], None]) -> Callable[[], None]:
    """Call ``wake`` whenever deliveries are committed; returns what stops that."""
    _senders.add(wake)
    return lambda: _senders.discard(wake)


def on_commit(session: AsyncSession) -> None:
    """Wake the senders once the transaction of ``session`` commits."""
    sync = session.sync_session
    sync.info[_PLANNED] = True
    if _LISTENING not in sync.info:
        sync.info[_LISTENING] = True
        event.listen(sync, "after_commit", _committed)


def _committed(session: Session) -> None:
    # A savepoint's release is reported too: only the transaction's own commit counts.
    if session.get_nested_transaction() is None and session.info.pop(_PLANNED, None):
        for wake in tuple(_senders):
            wake()
