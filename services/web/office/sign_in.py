"""Signing in and out, and the staff member's own account page."""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import Response

from services.web.forms import FormProblems
from services.web.office.accounts import StaffMember
from services.web.office.commands import ROLES
from services.web.office.door import office_render, page, redirect, safe_next
from services.web.office.forms import SignInForm
from services.web.security import check_csrf, within_limit

WRONG = "Enter a correct email address and password"


def minutes(seconds: float) -> str:
    count = max(1, math.ceil(seconds / 60))
    return f"{count} minute{'s' if count != 1 else ''}"


async def sign_in(request: Request) -> Response:
    office = request.app.state.office
    if request.state.staff is not None:
        return redirect(safe_next(request.query_params.get("next")))
    if request.method == "GET":
        return office_render(
            request,
            "office/sign_in.html",
            {
                "form": SignInForm(),
                "problems": FormProblems(),
                "next": safe_next(request.query_params.get("next")),
                "signed_out": request.query_params.get("signed_out") == "1",
            },
        )
    form_data = await request.form()
    check_csrf(request, form_data)
    client = within_limit(request, office.sign_in_limit, "tried to sign in")
    office.sign_in_limit.record(client)
    form, problems = SignInForm.read(form_data)
    next_url = safe_next(str(form_data.get("next") or ""))
    status, wait = 400, 0.0
    if not problems:
        outcome = await office.accounts.sign_in(form.email, form.password, address=client)
        if outcome.token is not None:
            response = redirect(next_url)
            response.headers.append("set-cookie", office.cookie(outcome.token))
            return response
        if outcome.locked_until is not None:
            wait = (outcome.locked_until - office.accounts.clock()).total_seconds()
            problems.general.append(
                "There have been too many wrong passwords for this email address. "
                f"Try again in {minutes(wait)}, or ask an administrator to reset your password"
            )
            status = 429
        else:
            problems.general.append(WRONG)
        form.password = ""
    response = office_render(
        request,
        "office/sign_in.html",
        {"form": form, "problems": problems, "next": next_url, "signed_out": False},
        status=status,
    )
    if status == 429:
        response.headers["retry-after"] = str(max(1, math.ceil(wait)))
    return response


async def sign_out(request: Request) -> Response:
    check_csrf(request, await request.form())
    office = request.app.state.office
    await office.accounts.sign_out(request.state.staff)
    response = redirect("/office/sign-in?signed_out=1")
    response.headers.append("set-cookie", office.cookie("", max_age=0))
    return response


async def account(request: Request) -> Response:
    staff: StaffMember = request.state.staff
    return office_render(
        request,
        "office/account.html",
        {"roles": [(role, ROLES[role]) for role in sorted(staff.roles)]},
    )


async def sign_out_everywhere(request: Request) -> Response:
    check_csrf(request, await request.form())
    office = request.app.state.office
    await office.accounts.sign_out_everywhere(request.state.staff)
    response = redirect("/office/sign-in?signed_out=1")
    response.headers.append("set-cookie", office.cookie("", max_age=0))
    return response


routes = [
    page("/sign-in", sign_in, roles=None, methods=("GET", "POST"), name="sign_in"),
    page("/sign-out", sign_out, roles=None, methods=("POST",), name="sign_out"),
    page("/account", account, roles=None, name="account"),
    page(
        "/account/sign-out-everywhere",
        sign_out_everywhere,
        roles=None,
        methods=("POST",),
        name="sign_out_everywhere",
    ),
]
