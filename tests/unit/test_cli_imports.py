"""What the `vestry` command loads to start: `vestry --help` none of the contracts, the
kernel, nats-py, the services, SQLAlchemy or WeasyPrint, and `vestry status` nats-py and
the contracts but no store and no service. Each runs in a fresh interpreter, which then
names every module it loaded; how long that took is the benchmark's to say
(``python -m benchmarks cli_start``), never a test's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from contracts.notifications_v1 import TOPICS
from services.web.office.commands import ROLES
from vestry.cli import app
from vestry.cli_notifications import TOPIC_NAMES
from vestry.cli_staff import ROLE_NAMES
from vestry.natsserver import free_port

# Run `vestry ARGS` as `python -m vestry` would, then print the top-level packages loaded.
SCRIPT = """
import json, sys
from vestry.cli import app
code = 0
try:
    app(sys.argv[1:], prog_name="vestry")
except SystemExit as done:
    code = done.code
print(json.dumps({"code": code, "loaded": sorted({name.split(".")[0] for name in sys.modules})}))
"""


def loaded_by(*args: str) -> tuple[int, set[str]]:
    """The exit code of `vestry ARGS` in a fresh interpreter, and the packages it loaded."""
    ran = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=120
    )
    last = json.loads(ran.stdout.splitlines()[-1])
    return last["code"], set(last["loaded"])


def test_help_loads_no_contract_kernel_nats_store_service_or_pdf_library() -> None:
    # Typer builds every command's options to show the help, so this covers them all.
    code, loaded = loaded_by("--help")
    assert code == 0
    assert "typer" in loaded  # the check sees what was loaded
    unwanted = {"sqlalchemy", "services", "weasyprint", "kernel", "contracts", "nats"}
    assert loaded & unwanted == set()


def test_status_loads_nats_and_the_contracts_but_no_store_or_service() -> None:
    nobody = f"nats://127.0.0.1:{free_port()}"
    code, loaded = loaded_by("--nats", nobody, "--json", "status")
    assert code == 2  # NATS unreachable: status got as far as connecting
    assert {"nats", "contracts"} <= loaded
    assert loaded & {"sqlalchemy", "services", "weasyprint"} == set()


def test_help_names_the_topics_and_roles_the_services_accept() -> None:
    # Written out in the CLI so that its help loads neither; they must not drift apart.
    assert tuple(TOPICS) == TOPIC_NAMES
    assert tuple(ROLES) == ROLE_NAMES


def vestry(*args: str) -> subprocess.CompletedProcess[str]:
    """`vestry ARGS` as the installed command runs it (``vestry.cli.main``)."""
    return subprocess.run(
        [sys.executable, "-m", "vestry", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "100", "NO_COLOR": "1"},
    )


def test_a_command_run_alone_says_what_it_says_within_the_whole_app() -> None:
    """`main` builds only the command named (or the whole app for --help and for a name
    that is no command): help and errors read as they do from the whole app."""
    whole = CliRunner()
    for args in (
        ["members", "--help"],
        ["--json", "status", "--help"],
        ["dlq", "ls", "--help"],
        ["invoices", "export", "--help"],
        ["--help"],
    ):
        alone = vestry(*args)
        within = whole.invoke(
            app, args, prog_name="vestry", env={"COLUMNS": "100", "NO_COLOR": "1"}
        )
        assert (alone.returncode, alone.stdout) == (within.exit_code, within.output), args
    unknown = vestry("nonsense")
    assert unknown.returncode == 2 and "No such command 'nonsense'" in unknown.stderr


def test_a_global_option_before_the_command_is_still_read() -> None:
    nobody = f"nats://127.0.0.1:{free_port()}"
    ran = vestry("--nats", nobody, "--json", "status", "--wait", "0")
    assert ran.returncode == 2
    assert nobody in json.loads(ran.stdout)["error"]["message"]
