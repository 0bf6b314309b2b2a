"""`vestry dev`: the whole stack on one machine, as child processes that stop together,
each brought back if it dies (NATS and the SMTP capture too)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass
class DevStack:
    data_dir: Path
    nats_port: int = 4222
    smtp_port: int = 8025
    monitor_port: int = 8222
    web_port: int = 8000  # 0: any free port
    overrides: dict[str, str] = field(default_factory=dict)  # settings for the children
    say: Callable[[str], None] = print
    nats: NatsServer | None = None
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
            **self.overrides,
        }

    @property
    def public_url(self) -> str:
        """The public site, where the links in messages point."""
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> None:
        for name, port in (
            ("NATS", self.nats_port),
            ("SMTP", self.smtp_port),
            ("NATS monitoring", self.monitor_port),
            ("web", self.web_port),
        ):
            if port and port_in_use(port):
                raise PortBusy(
                    f"{name} port {port} is in use: is another `vestry dev` running? "
                    f"Stop it, or choose other ports (see `vestry dev --help`)."
                )
        self.web_port = self.web_port or free_port()
        self.logs.mkdir(parents=True, exist_ok=True)
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
        for service in (*SERVICES, *DOORS):
            self._spawn(service, [sys.executable, "-m", f"services.{service}"])

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
        """Bring back whatever exited on its own (NATS, the SMTP capture, a service or the
        site), each at most ``max_restarts_per_minute`` times a minute, saying so."""
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
        log = self.logs / ("nats.log" if name == "nats-server" else f"{name}.log")
        if len(recent) >= self.max_restarts_per_minute:
            if name not in self._held:
                self._held.add(name)
                self.say(
                    f"{name} exited with code {code} {len(recent)} times within a minute; "
                    f"waiting before trying again (see {log})"
                )
            return False
        self._held.discard(name)
        self.restarts[name] = [*recent, now]
        self.say(f"{name} exited with code {code}; restarting (see {log})")
        return True

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every child, wait, then SIGKILL whatever is left; NATS last."""
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

    def pids(self) -> dict[str, int]:
        found = {name: child.pid for name, child in self.children.items()}
        if self.nats is not None and self.nats.process is not None:
            found["nats-server"] = self.nats.process.pid
        return found
