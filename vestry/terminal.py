"""What every `vestry` command shares: options, output (Rich or JSON) and how failures read."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from contracts.system_v1 import CommandError
from kernel.commands import CommandFailed, ServiceUnavailable
from kernel.settings import Settings
from vestry.connection import NatsUnreachable

T = TypeVar("T")

console = Console()
errors = Console(stderr=True)


@dataclass(frozen=True)
class Options:
    nats: str
    json: bool
    settings: Settings


def options_of(ctx: typer.Context) -> Options:
    return ctx.ensure_object(Options) if isinstance(ctx.obj, Options) else ctx.find_root().obj


def fail(
    message: str,
    *,
    code: int = 1,
    options: Options | None = None,
    detail: dict[str, Any] | None = None,
) -> NoReturn:
    if options is not None and options.json:
        print(json.dumps({"ok": False, "error": detail or {"message": message}}))
    else:
        errors.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def refuse(error: CommandError, options: Options) -> NoReturn:
    where = f" (field: {error.field})" if error.field else ""
    fail(f"{error.message}{where}", options=options, detail=error.model_dump())


def run(options: Options, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work``, turning the ways a request can fail into clear messages and exit codes."""
    try:
        return asyncio.run(work)
    except CommandFailed as failure:
        refuse(failure.error, options)
    except (ServiceUnavailable, NatsUnreachable) as problem:
        fail(str(problem), code=2, options=options)


def emit(options: Options, data: Any, render: Any) -> None:
    if options.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        render()
