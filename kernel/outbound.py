"""HTTP clients to the providers outside Vestry (GOV.UK Notify, GOV.UK Pay, a webhook).

Each follows redirects (httpx does not by default) and trusts what the system trusts
(httpx alone would trust certifi's list), with one TLS context built once: building
one reads the system's certificates from disk, about 20 ms a time.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def client(timeout_s: float) -> httpx.AsyncClient:
    """A client whose every step is bounded by ``timeout_s`` (bound the whole exchange
    with ``asyncio.timeout`` around it: httpx's timeout is per step)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s), follow_redirects=True, verify=tls_context()
    )


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object, whatever its Content-Type; {} when it is not one."""
    try:
        answer = response.json()
    except ValueError:  # not JSON, or empty
        return {}
    return answer if isinstance(answer, dict) else {}
