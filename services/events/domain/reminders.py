"""When a confirmed booker is reminded: at fixed offsets before the start."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

DEFAULT_OFFSETS_H: tuple[int, ...] = (7 * 24, 24)


@dataclass(frozen=True)
class ReminderSlot:
    hours_before: int
    due_at: datetime


def reminder_slots(
    starts_at: datetime, *, now: datetime, offsets_h: tuple[int, ...] = DEFAULT_OFFSETS_H
) -> list[ReminderSlot]:
    """One slot per offset still in the future: a reminder already late is not sent."""
    slots = [
        ReminderSlot(hours, starts_at - timedelta(hours=hours)) for hours in sorted(set(offsets_h))
    ]
    return [slot for slot in slots if slot.due_at > now]
