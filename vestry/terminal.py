"""What every `vestry` command shares: options, output (Rich or JSON) and how failures read."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from vestry.connection import NatsUnreachable, connected

if TYPE_CHECKING:
    from rich.table import Table

    from contracts import Message
    from contracts.system_v1 import CommandError
    from kernel.settings import Settings

T = TypeVar("T")
M = TypeVar("M", bound="Message")

console = Console()
errors = Console(stderr=True)


def new_table(*args: Any, **kwargs: Any) -> Table:
    """A Rich table, its module loaded only when a command draws one (not at start-up,
    and not for ``--json``)."""
    from rich.table import Table

    return Table(*args, **kwargs)


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


class BadInput(Exception):
    """Raised while building a command from a person's input that cannot be right."""

    def __init__(self, message: str, field: str) -> None:
        from contracts.system_v1 import CommandError

        super().__init__(message)
        self.error = CommandError(code="invalid", message=message, field=field)


def build(options: Options, make: Callable[[], M]) -> M:
    """The command ``make`` builds, or a structured refusal before anything is sent."""
    from pydantic import ValidationError

    from kernel.commands import validation_error

    try:
        return make()
    except BadInput as bad:
        refuse(bad.error, options)
    except ValidationError as invalid:
        refuse(validation_error(invalid), options)


def send(options: Options, command: Message, timeout: float = 30) -> dict[str, Any]:
    """Send ``command`` to its service and return the answer's data; failures exit clearly."""
    from kernel.commands import request

    async def go() -> dict[str, Any]:
        async with connected(options.nats) as nc:
            return await request(nc, command, timeout=timeout)

    return run(options, go())


def refuse(error: CommandError, options: Options) -> NoReturn:
    where = f" (field: {error.field})" if error.field else ""
    fail(f"{error.message}{where}", options=options, detail=error.model_dump())


def run(options: Options, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work``, turning the ways a request can fail into clear messages and exit codes."""
    try:
        return asyncio.run(work)
    except NatsUnreachable as problem:
        fail(str(problem), code=2, options=options)
    except Exception as problem:
        _explain_failed_request(problem, options)
        raise


def _explain_failed_request(problem: Exception, options: Options) -> None:
    """Exit with a clear message if ``problem`` is a request refused or left unanswered."""
    if "kernel.commands" not in sys.modules:
        # Work that sent no request (`vestry status` sends none) cannot have failed as
        # one, and loading the command layer here would load SQLAlchemy for nothing.
        return
    from kernel.commands import CommandFailed, ServiceUnavailable

    if isinstance(problem, CommandFailed):
        refuse(problem.error, options)
    if isinstance(problem, ServiceUnavailable):
        fail(str(problem), code=2, options=options)


def emit(options: Options, data: Any, render: Any) -> None:
    if options.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        render()
