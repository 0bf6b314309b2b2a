"""`vestry demo`: the reference partnership, driven through the running services."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date

from nats.aio.client import Client
from rich.progress import Progress

from contracts.subscriptions_v1 import JoinMember
from kernel.commands import CommandFailed, request

# Figures from a real programme plan: 20 upper-tier councils, 24 districts, one
# police/fire/primary-care body.
UPPER_TIER = (
    "Manchester City Council",
    "Salford City Council",
    "Bolton Council",
    "Bury Council",
    "Oldham Council",
    "Rochdale Borough Council",
    "Stockport Council",
    "Tameside Council",
    "Trafford Council",
    "Wigan Council",
    "Liverpool City Council",
    "Knowsley Council",
    "Sefton Council",
    "St Helens Council",
    "Wirral Council",
    "Lancashire County Council",
    "Cheshire East Council",
    "Cheshire West and Chester Council",
    "Warrington Borough Council",
    "Blackpool Council",
)
DISTRICT = (
    "Burnley Borough Council",
    "Chorley Council",
    "Fylde Council",
    "Hyndburn Borough Council",
    "Lancaster City Council",
    "Pendle Borough Council",
    "Preston City Council",
    "Ribble Valley Borough Council",
    "Rossendale Borough Council",
    "South Ribble Borough Council",
    "West Lancashire Borough Council",
    "Wyre Council",
    "Allerdale Borough Council",
    "Barrow Borough Council",
    "Carlisle City Council",
    "Copeland Borough Council",
    "Eden District Council",
    "South Lakeland District Council",
    "Congleton Borough Council",
    "Crewe and Nantwich Borough Council",
    "Macclesfield Borough Council",
    "Vale Royal Borough Council",
    "Ellesmere Port and Neston Borough Council",
    "Chester City Council",
)
PUBLIC_SERVICE = ("Greater Manchester Fire and Rescue Service",)


def reference_members(joined_on: date = date(2026, 4, 1)) -> list[JoinMember]:
    """The 45 paying members of the reference partnership."""
    members = []
    for tier, names in (
        ("upper-tier", UPPER_TIER),
        ("district", DISTRICT),
        ("public-service", PUBLIC_SERVICE),
    ):
        for name in names:
            slug = "-".join(name.lower().replace(" and ", " ").split()[:3])
            members.append(
                JoinMember(
                    name=name,
                    tier=tier,
                    billing_email=f"accounts@{slug}.example.gov.uk",
                    joined_on=joined_on,
                )
            )
    return members


@dataclass
class JoinOutcome:
    joined: int = 0
    already: int = 0
    refused: list[str] | None = None


async def enrol_reference_partnership(nc: Client, progress: Progress | None = None) -> JoinOutcome:
    members = reference_members()
    outcome = JoinOutcome(refused=[])
    task = progress.add_task("Enrolling members", total=len(members)) if progress else None
    for member in members:
        try:
            await request(nc, member)
            outcome.joined += 1
        except CommandFailed as failure:
            if failure.error.code == "conflict":
                outcome.already += 1
            else:
                assert outcome.refused is not None
                outcome.refused.append(f"{member.name}: {failure.error.message}")
        if progress is not None and task is not None:
            progress.advance(task)
    return outcome


async def wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.25)
    return False
