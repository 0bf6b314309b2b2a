"""Event and booking rules, free of I/O."""

from __future__ import annotations

from datetime import date


def membership_active(starts_on: date, ends_on: date | None, on: date) -> bool:
    """Whether a membership covers the day ``on`` (member pricing is by the event's date)."""
    return starts_on <= on and (ends_on is None or on <= ends_on)
