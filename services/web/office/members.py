"""Members: the list, searched by name and filtered by tier and status, and one member's
page with its membership and documents. Finance's pages."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from contracts.subscriptions_v1 import ListMembers, ShowMember
from services.web.office.door import ask, ask_about, office_render, page, refusal

FINANCE = ("finance",)
STATUSES = {"": "Current and left", "current": "Current", "left": "Left"}


async def members(request: Request) -> Response:
    search = request.query_params.get("q", "").strip()[:200]
    tier = request.query_params.get("tier", "")
    status = request.query_params.get("status", "")
    status = status if status in STATUSES else ""
    every = (await ask(request, ListMembers()))["members"]
    tiers = sorted({m["tier"] for m in every})
    tier = tier if tier in tiers else ""
    shown = [
        m
        for m in every
        if (not tier or m["tier"] == tier)
        and (not status or (status == "current") == m["current"])
        and (not search or search.casefold() in m["name"].casefold())
    ]
    return office_render(
        request,
        "office/members/list.html",
        {
            "members": shown,
            "total": len(every),
            "tiers": tiers,
            "tier": tier,
            "status": status,
            "statuses": STATUSES,
            "search": search,
        },
    )


async def member(request: Request) -> Response:
    found = await ask_about(request, lambda: ShowMember(member=request.path_params["member_id"]))
    if found is None:
        return refusal(request, 404, "Member not found", "There is no member at this address.")
    return office_render(request, "office/members/show.html", {"member": found})


routes = [
    page("/members", members, roles=FINANCE, name="members"),
    page("/members/{member_id}", member, roles=FINANCE, name="member"),
]
