"""How an attempt to send can fail: worth another try, or not."""

from __future__ import annotations


class TransientFailure(Exception):
    """Raised when an attempt failed in a way a later attempt may not (4xx, timeout, 5xx gateway)."""


class PermanentFailure(Exception):
    """Raised when no retry can fix an attempt (a 5xx mailbox, an invalid number, a bad template)."""
