"""PDFs read back by poppler (``pdftotext``, ``pdfinfo``), a reader independent of the code
that printed them. Missing poppler skips the calling test locally and fails it on CI
(CI=true), where ``make test`` installs it first."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest


def _poppler(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        message = f"{tool} (poppler-utils) is not installed; `make documents` installs it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{tool} is needed on CI: {message}", pytrace=False)
        pytest.skip(message)
    return found


def _run(tool: str, pdf: bytes, *args: str) -> str:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "document.pdf"
        path.write_bytes(pdf)
        done = subprocess.run(
            [_poppler(tool), *args, str(path), *(["-"] if tool == "pdftotext" else [])],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    return done.stdout


def pdf_text(pdf: bytes) -> str:
    """The PDF's text in reading order (a block at a time), each run of white space one
    space: for what is set one line under another, like an address."""
    return " ".join(_run("pdftotext", pdf).split())


def pdf_rows(pdf: bytes) -> list[str]:
    """The PDF's lines as laid out on the page, each run of white space one space: for
    what is set side by side, like a table's row."""
    return [" ".join(line.split()) for line in _run("pdftotext", pdf, "-layout").splitlines()]


def pdf_info(pdf: bytes) -> dict[str, str]:
    """What pdfinfo says of the PDF (dates in ISO 8601), by field."""
    info = {}
    for line in _run("pdfinfo", pdf, "-isodates").splitlines():
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info
