"""How long the `vestry` command takes to start: ``vestry --help``, and ``vestry --json
status`` against a real nats-server with no service running (each is reported down at
once: the server answers that nobody listens, and ``--wait 0`` looks only once).

Each start is a new ``python -m vestry`` process, timed from spawn to exit, with the
CPU time it used beside (steadier than the wall clock on a shared machine). Baselines
from the same run, started in turn with the CLI so that a busy machine slows all
alike: ``python -c pass`` (the interpreter alone) and ``python -c "import nats"``
(the floor of any command that speaks to NATS). One unmeasured start of each comes
first and compiles every module into a cache of the run's own, so that no figure
includes compiling, whether or not this environment writes bytecode.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from benchmarks.common import Figure, percentile
from vestry.natsserver import NatsServer

DESCRIPTION = (
    "`vestry --help` and `vestry --json status` start to exit, vs python -c pass and import nats"
)
DEFAULT_COUNT = 20  # starts of each
ROOT = Path(__file__).resolve().parents[1]
MS = 1000.0


def commands(nats_url: str) -> dict[str, list[str]]:
    python = sys.executable
    vestry = [python, "-m", "vestry"]
    return {
        "python -c pass": [python, "-c", "pass"],
        "python -c 'import nats'": [python, "-c", "import nats"],
        "vestry --help": [*vestry, "--help"],
        "vestry --json status": [*vestry, "--nats", nats_url, "--json", "status", "--wait", "0"],
    }


def cpu_of_children() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def start(name: str, argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds from spawning ``argv`` to its exit, and the CPU seconds it used; raises if
    it did not do its job."""
    cpu_before, started = cpu_of_children(), time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    seconds, cpu = time.perf_counter() - started, cpu_of_children() - cpu_before
    if name == "vestry --json status":
        # Nothing runs but NATS, so status reports every service down and exits 1.
        report = json.loads(done.stdout)
        if done.returncode != 1 or report["healthy"] or any(s["up"] for s in report["services"]):
            raise AssertionError(f"status with no services: {done.returncode} {done.stdout}")
    elif done.returncode != 0:
        raise AssertionError(f"{name} exited {done.returncode}: {done.stderr}")
    elif name == "vestry --help" and "Usage: vestry" not in done.stdout:
        raise AssertionError(f"vestry --help printed no usage: {done.stdout[:200]}")
    return seconds, cpu


def time_starts(nats_url: str, count: int, pycache: Path) -> dict[str, list[tuple[float, float]]]:
    """``count`` starts of each command, one of each in turn, after one unmeasured round."""
    argvs = commands(nats_url)
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(pycache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for name, argv in argvs.items():
        start(name, argv, env)
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in argvs}
    for _ in range(count):
        for name, argv in argvs.items():
            timings[name].append(start(name, argv, env))
    return timings


async def run(count: int) -> list[Figure]:
    with (
        TemporaryDirectory(prefix="vestry-bench-") as tmp,
        NatsServer(Path(tmp) / "jetstream") as server,
    ):
        timings = await asyncio.to_thread(time_starts, server.url, count, Path(tmp) / "pycache")
    median = {name: statistics.median(wall for wall, _ in runs) for name, runs in timings.items()}
    floor = median["python -c 'import nats'"]
    figures = []
    for name, runs in timings.items():
        cpu = statistics.median(cpu for _, cpu in runs)
        figures += [
            Figure(f"{name} p50", median[name] * MS, "ms", f"CPU p50 {cpu * MS:.0f} ms"),
            Figure(f"{name} p95", percentile([wall for wall, _ in runs], 0.95) * MS, "ms"),
        ]
    return [
        *figures,
        Figure("vestry --help p50 / import nats p50", median["vestry --help"] / floor, "×"),
        Figure("status p50 / import nats p50", median["vestry --json status"] / floor, "×"),
    ]
