"""``python -m benchmarks [NAME ...] [--count N]``: run the named benchmarks, or all."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
import time
from types import ModuleType

from benchmarks import BENCHMARKS
from benchmarks.common import context_line


def load(name: str) -> ModuleType:
    return importlib.import_module(f"benchmarks.{name}")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    parser.add_argument(
        "--count",
        type=int,
        default=None,
        help="messages per benchmark (default: each benchmark's own, e.g. 20,000)",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and stop")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    if args.count is not None and args.count < 1:
        parser.error("--count must be at least 1")
    return args


async def run_one(name: str, count: int | None) -> None:
    module = load(name)
    count = count or getattr(module, "DEFAULT_COUNT", 20_000)
    print(f"{name}: {module.DESCRIPTION} — {count:,} messages", flush=True)
    started = time.monotonic()
    for figure in await module.run(count):
        print(figure, flush=True)
    print(f"  ({time.monotonic() - started:.1f}s in all)", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.list:
        for name in BENCHMARKS:
            print(f"{name:<16} {load(name).DESCRIPTION}")
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print(context_line(), flush=True)
    for name in args.names or BENCHMARKS:
        asyncio.run(run_one(name, args.count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
