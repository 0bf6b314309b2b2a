"""Members, changed: an organisation joins, a file of them is imported (all or none, every
bad row named by its line), a member changes tier from a date or leaves; and an invoice
or credit note offered as the very document its billing contact receives, to read in
the browser or download as the PDF. Finance's pages; every rule, figure and document is
the subscriptions service's."""

from __future__ import annotations

import base64
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from contracts.subscriptions_v1 import ListMembers, ShowDocument, ShowMember
from kernel.commands import CommandFailed
from services.web.forms import FormProblems, sentence
from services.web.office.door import ask, ask_about, office_render, page, redirect, refusal
from services.web.office.exports import SAFE_NAME
from services.web.office.forms import DateFields
from services.web.office.member_forms import (
    LeaveForm,
    MemberForm,
    MembersFile,
    TierForm,
    refusal_by_line,
)
from services.web.office.today import london_today
from services.web.security import check_csrf

FINANCE = ("finance",)
# A document shown as it was printed keeps its own styles and runs nothing: this policy
# replaces the site's for that one answer (security.SecureDoor keeps a response's own).
DOCUMENT_POLICY = "; ".join(
    [
        "default-src 'none'",
        "style-src 'unsafe-inline'",
        "img-src data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "sandbox",
    ]
)


async def tiers_in_use(request: Request) -> list[str]:
    """The tiers members are on now, as a hint: the subscriptions service names every tier
    when it refuses one it does not know."""
    return sorted({m["tier"] for m in (await ask(request, ListMembers()))["members"]})


def on_form(problems: FormProblems, where: str, message: str) -> None:
    if where:
        problems.by_field[where] = sentence(message)
    else:
        problems.general.append(sentence(message))


# Joining


async def new_member(request: Request) -> Response:
    tiers = await tiers_in_use(request)
    if request.method == "GET":
        form = MemberForm(joined=DateFields.of(london_today()))
        return member_form_page(request, form, FormProblems(), tiers)
    form_data = await request.form()
    check_csrf(request, form_data)
    form, problems = MemberForm.read(form_data)
    if problems:
        return member_form_page(request, form, problems, tiers, status=400)
    command, problems = form.command()
    if command is None:
        return member_form_page(request, form, problems, tiers, status=400)
    try:
        joined = await ask(request, command)
    except CommandFailed as refused:
        problems = FormProblems()
        on_form(problems, MemberForm.form_field(refused.error.field), refused.error.message)
        return member_form_page(request, form, problems, tiers, status=409)
    return redirect(f"/office/members/{joined['member_id']}?done=joined")


def member_form_page(
    request: Request,
    form: MemberForm,
    problems: FormProblems,
    tiers: list[str],
    *,
    status: int = 200,
) -> Response:
    return office_render(
        request,
        "office/members/new.html",
        {"form": form, "problems": problems, "tiers": tiers},
        status=status,
    )


# Importing a file


async def import_members(request: Request) -> Response:
    if request.method == "GET":
        return import_page(request, MembersFile(), FormProblems())
    form_data = await request.form()
    check_csrf(request, form_data)
    upload = form_data.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        problems = FormProblems(by_field={"file": "Choose a CSV file of members"})
        return import_page(request, MembersFile(), problems, status=400)
    found = MembersFile.read(upload.filename, await upload.read())
    if found.bad_rows:
        return import_page(request, found, found.problems(), status=400)
    try:
        imported = await ask(request, found.command())
    except CommandFailed as refused:
        found.bad_rows = refusal_by_line(refused.error.message) or [
            (0, sentence(refused.error.message))
        ]
        return import_page(request, found, found.problems(), status=409)
    return office_render(
        request,
        "office/members/imported.html",
        {"joined": imported["joined"], "filename": found.filename},
    )


def import_page(
    request: Request, found: MembersFile, problems: FormProblems, *, status: int = 200
) -> Response:
    return office_render(
        request,
        "office/members/import.html",
        {"file": found, "problems": problems},
        status=status,
    )


# Changing tier and leaving


async def find_member(request: Request) -> dict[str, Any] | None:
    """The member the address names, as the subscriptions service shows it; None if none."""
    return await ask_about(request, lambda: ShowMember(member=request.path_params["member_id"]))


def no_member(request: Request) -> Response:
    return refusal(request, 404, "Member not found", "There is no member at this address.")


async def change_tier(request: Request) -> Response:
    member = await find_member(request)
    if member is None:
        return no_member(request)
    tiers = await tiers_in_use(request)
    if request.method == "GET":
        form = TierForm(effective=DateFields.of(london_today()))
        return tier_page(request, member, form, FormProblems(), tiers)
    form_data = await request.form()
    check_csrf(request, form_data)
    form, problems = TierForm.read(form_data)
    command = None
    if not problems:
        command, problems = form.command(member["member_id"])
    if command is None:
        return tier_page(request, member, form, problems, tiers, status=400)
    try:
        await ask(request, command)
    except CommandFailed as refused:
        problems = FormProblems()
        where = {"tier": "tier", "effective_on": "effective_on"}.get(refused.error.field or "", "")
        on_form(problems, where, refused.error.message)
        return tier_page(request, member, form, problems, tiers, status=409)
    return redirect(f"/office/members/{member['member_id']}?done=tier")


def tier_page(
    request: Request,
    member: dict[str, Any],
    form: TierForm,
    problems: FormProblems,
    tiers: list[str],
    *,
    status: int = 200,
) -> Response:
    return office_render(
        request,
        "office/members/tier.html",
        {"member": member, "form": form, "problems": problems, "tiers": tiers},
        status=status,
    )


async def leave(request: Request) -> Response:
    member = await find_member(request)
    if member is None:
        return no_member(request)
    if request.method == "GET":
        return leave_page(request, member, LeaveForm(), FormProblems())
    form_data = await request.form()
    check_csrf(request, form_data)
    form, problems = LeaveForm.read(form_data)
    if problems:
        return leave_page(request, member, form, problems, status=400)
    try:
        await ask(request, form.command(member["member_id"]))
    except CommandFailed as refused:
        problems = FormProblems()
        where = "leaves_on" if refused.error.field in ("leaves_on", "ends_on") else ""
        on_form(problems, where, refused.error.message)
        return leave_page(request, member, form, problems, status=409)
    return redirect(f"/office/members/{member['member_id']}?done=left")


def leave_page(
    request: Request,
    member: dict[str, Any],
    form: LeaveForm,
    problems: FormProblems,
    *,
    status: int = 200,
) -> Response:
    return office_render(
        request,
        "office/members/leave.html",
        {"member": member, "form": form, "problems": problems},
        status=status,
    )


# The document a member receives


async def document(request: Request) -> Response:
    """An invoice or credit note as its billing contact receives it: the PDF to download,
    or the HTML it is printed from, shown as it is."""
    wanted = request.path_params["format"]
    try:
        found = await ask(
            request, ShowDocument(number=request.path_params["number"], format=wanted)
        )
    except (ValidationError, CommandFailed) as failed:
        if isinstance(failed, CommandFailed) and failed.error.code not in ("not_found", "invalid"):
            raise
        return refusal(request, 404, "Invoice not found", "There is no invoice at this address.")
    content = base64.b64decode(found["content_base64"])
    if wanted == "html":
        return Response(
            content,
            media_type="text/html; charset=utf-8",
            headers={"content-security-policy": DOCUMENT_POLICY},
        )
    return Response(
        content,
        media_type=found["media_type"],
        headers={
            "content-disposition": f'attachment; filename="{SAFE_NAME.sub("-", found["filename"])}"'
        },
    )


routes = [
    page("/members/new", new_member, roles=FINANCE, methods=("GET", "POST"), name="new_member"),
    page(
        "/members/import",
        import_members,
        roles=FINANCE,
        methods=("GET", "POST"),
        name="import_members",
    ),
    page(
        "/members/{member_id}/tier",
        change_tier,
        roles=FINANCE,
        methods=("GET", "POST"),
        name="change_tier",
    ),
    page(
        "/members/{member_id}/leave",
        leave,
        roles=FINANCE,
        methods=("GET", "POST"),
        name="leave_member",
    ),
    page(
        "/invoices/{number}/document.{format:str}",
        document,
        roles=FINANCE,
        name="invoice_document",
    ),
]
