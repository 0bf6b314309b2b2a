"""Throughput benchmarks against a real nats-server: ``python -m benchmarks [NAME ...]``.

Each benchmark is a module here with a ``DESCRIPTION`` and an
``async def run(count: int) -> list[Figure]`` (and optionally a ``DEFAULT_COUNT``);
list it in ``BENCHMARKS``.
"""

from __future__ import annotations

BENCHMARKS: tuple[str, ...] = (
    "outbox_inbox",
    "booking_rush",
    "invoice_run",
    "replay",
    "broadcast",
    "web",
    "cli_start",
    "audit_log",
)
