"""Helpers for the subscriptions tests: the service with billing settings, runs to the end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

from nats.aio.client import Client

from contracts.subscriptions_v1 import InvoiceRunStatus, JoinMember, RunInvoicing
from kernel.commands import request
from kernel.runtime import Service
from kernel.settings import Settings
from services.subscriptions.app import create_service
from services.subscriptions.handlers import Clock, utc_now
from services.subscriptions.settings import BillingSettings
from vestry.demo import reference_members


def billing_settings(**overrides: Any) -> BillingSettings:
    return BillingSettings(
        _env_file=None,  # type: ignore[call-arg]
        **{"automation": False, "invoice_run_lease_s": 2.0, **overrides},
    )


@asynccontextmanager
async def subscriptions(
    settings: Settings, *, clock: Clock = utc_now, **billing: Any
) -> AsyncIterator[Service]:
    async with create_service(
        settings, billing=billing_settings(**billing), clock=clock
    ).running() as service:
        yield service


async def enrol_reference(nc: Client, joined_on: date = date(2008, 4, 1)) -> list[JoinMember]:
    members = reference_members(joined_on)
    for member in members:
        await request(nc, member)
    return members


async def run_to_end(nc: Client, year: int, timeout: float = 60, **extra: Any) -> dict[str, Any]:
    """Ask for a run and wait until it completes; returns its record."""
    started = await request(nc, RunInvoicing(year=year, **extra))
    return await wait_for_run(nc, started["run_id"], timeout)


async def wait_for_run(nc: Client, run_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        record = await request(nc, InvoiceRunStatus(run_id=run_id))
        if record["status"] not in ("queued", "running"):
            return record
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"run not finished after {timeout}s: {record}")
        await asyncio.sleep(0.05)
