"""Throughput benchmarks against a real nats-server: ``python -m benchmarks [NAME ...]``.

Each benchmark is a module here with a ``DESCRIPTION`` and an
``async def run(count: int) -> list[Figure]``; list it in ``BENCHMARKS``.
"""

from __future__ import annotations

BENCHMARKS: tuple[str, ...] = ("outbox_inbox", "invoice_run")
