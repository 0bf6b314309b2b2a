"""Running the independent validators in tests/validators (npm packages) from a test.

``run_node(script, stdin)`` runs a small Node.js script with those packages on its
module path and returns what it printed. Without Node or the packages the test skips
locally and fails when CI=true (``make test`` installs them first)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

VALIDATORS = Path(__file__).resolve().parent / "validators"
MODULES = VALIDATORS / "node_modules"


def require_validators() -> str:
    """The node binary, once the validators are installed; skip (or fail on CI) otherwise."""
    node = shutil.which("node")
    problem = None
    if node is None:
        problem = "Node.js is not installed"
    elif not MODULES.is_dir():
        problem = "the validators are not installed: run `make validators`"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem} (CI must run the validator tests)")
        pytest.skip(problem)
    assert node is not None
    return node


def run_node(script: str, stdin: str = "", *, timeout: float = 60) -> str:
    """Run ``script`` (CommonJS) with tests/validators/node_modules resolvable; its stdout."""
    node = require_validators()
    done = subprocess.run(
        [node, "-e", script],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=VALIDATORS,
        env={**os.environ, "NODE_PATH": str(MODULES)},
    )
    if done.returncode != 0:
        raise AssertionError(f"node failed ({done.returncode}): {done.stderr[-3000:]}")
    return done.stdout


def run_node_json(script: str, payload: Any) -> Any:
    """Send ``payload`` as JSON on stdin; parse the script's stdout as JSON."""
    return json.loads(run_node(script, json.dumps(payload)))
