"""Invoicing: the year's runs, a new run previewed by tier (the dry run) and then
confirmed, the invoices filtered by year, status and tier, one invoice, recording a
payment and voiding. Finance's pages; every figure is the subscriptions service's."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from contracts.money import Money
from contracts.subscriptions_v1 import (
    InvoiceRunStatus,
    ListInvoices,
    RecordPayment,
    RunInvoicing,
    ShowInvoice,
    VoidInvoice,
)
from kernel.commands import CommandFailed
from services.web.forms import FormProblems, sentence
from services.web.office.door import ask, ask_about, office_render, page, redirect, refusal
from services.web.office.forms import DateFields, PaymentForm, VoidForm
from services.web.office.today import chosen_year, financial_year, london_today
from services.web.security import check_csrf

FINANCE = ("finance",)
STATUSES = {
    "": "Any status",
    "unpaid": "Outstanding (issued or part paid)",
    "overdue": "Overdue",
    "issued": "Issued, nothing paid",
    "part_paid": "Part paid",
    "paid": "Paid",
    "void": "Void",
}
GOING = ("queued", "running")
# A run of a few hundred members is done in a moment: the confirmation waits that long
# so that it can show the finished run rather than one just queued.
RUN_WAIT_S = 3.0


def years_around(year: int) -> list[int]:
    this = financial_year(london_today())
    return sorted({this - 1, this, this + 1, year})


# Runs


async def runs(request: Request) -> Response:
    year = chosen_year(request)
    reply = await ask(request, InvoiceRunStatus(year=year))
    return office_render(
        request,
        "office/invoicing/runs.html",
        {"year": year, "years": years_around(year), "runs": reply["runs"]},
    )


async def preview(request: Request) -> Response:
    return await preview_page(request, chosen_year(request))


async def preview_page(
    request: Request, year: int, problems: FormProblems | None = None
) -> Response:
    """What a run of ``year`` would issue, by tier, with the button that starts it."""
    try:
        planned = await ask(request, RunInvoicing(year=year, dry_run=True))
    except CommandFailed as refused:
        problems = problems or FormProblems()
        problems.general.append(sentence(refused.error.message))
        planned = None
    return office_render(
        request,
        "office/invoicing/preview.html",
        {"year": year, "preview": planned, "problems": problems or FormProblems()},
        status=409 if problems else 200,
    )


async def start_run(request: Request) -> Response:
    form = await request.form()
    check_csrf(request, form)
    raw = str(form.get("year", ""))
    if not raw.isdigit() or not 1990 <= int(raw) <= 2200:
        return refusal(request, 400, "Choose a year", "Go back and choose a financial year.")
    try:
        record = await ask(request, RunInvoicing(year=int(raw)))
    except CommandFailed as refused:
        problems = FormProblems(general=[sentence(refused.error.message)])
        return await preview_page(request, int(raw), problems)
    deadline = asyncio.get_running_loop().time() + RUN_WAIT_S
    while record["status"] in GOING and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
        record = await ask(request, InvoiceRunStatus(run_id=record["run_id"]))
    return redirect(f"/office/invoicing/runs/{record['run_id']}")


async def run(request: Request) -> Response:
    try:
        record = await ask(request, InvoiceRunStatus(run_id=request.path_params["run_id"]))
    except CommandFailed as refused:
        if refused.error.code != "not_found":
            raise
        return refusal(request, 404, "Run not found", "There is no invoicing run at this address.")
    return office_render(
        request, "office/invoicing/run.html", {"run": record, "going": record["status"] in GOING}
    )


# Invoices


async def invoices(request: Request) -> Response:
    year = chosen_year(request)
    status = request.query_params.get("status", "")
    status = status if status in STATUSES else ""
    asked = status if status in ("issued", "part_paid", "paid", "void", "overdue") else None
    reply = await ask(request, ListInvoices(year=year, status=asked, limit=100_000))  # type: ignore[arg-type]
    every = reply["invoices"]
    tiers = sorted({i["tier"] for i in every if i["tier"]})
    tier = request.query_params.get("tier", "")
    tier = tier if tier in tiers else ""
    shown = [
        i
        for i in every
        if (not tier or i["tier"] == tier)
        and (
            status != "unpaid"
            or (i["kind"] == "invoice" and i["status"] in ("issued", "part_paid"))
        )
    ]
    totals = {
        key: sum(i[key] for i in shown if i["kind"] == "invoice" and i["status"] != "void")
        for key in ("gross", "paid", "outstanding")
    }
    return office_render(
        request,
        "office/invoicing/invoices.html",
        {
            "invoices": shown,
            "totals": totals,
            "year": year,
            "years": years_around(year),
            "status": status,
            "statuses": STATUSES,
            "tier": tier,
            "tiers": tiers,
        },
    )


async def document(request: Request) -> dict[str, Any] | None:
    """The invoice or credit note the address names, or None if there is none."""
    return await ask_about(request, lambda: ShowInvoice(number=request.path_params["number"]))


def no_invoice(request: Request) -> Response:
    return refusal(request, 404, "Invoice not found", "There is no invoice at this address.")


async def invoice(request: Request) -> Response:
    found = await document(request)
    if found is None:
        return no_invoice(request)
    return office_render(
        request,
        "office/invoicing/invoice.html",
        {
            "invoice": found,
            "recorded": request.query_params.get("done") == "payment",
            "voided": request.query_params.get("done") == "void",
        },
    )


async def payment(request: Request) -> Response:
    found = await document(request)
    if found is None:
        return no_invoice(request)
    if request.method == "GET":
        form = PaymentForm(received=DateFields.of(london_today()))
        return payment_page(request, found, form, FormProblems())
    form_data = await request.form()
    check_csrf(request, form_data)
    form, problems, amount, received_on = PaymentForm.read(form_data)
    if problems:
        return payment_page(request, found, form, problems, status=400)
    assert amount is not None and received_on is not None
    try:
        await ask(
            request,
            RecordPayment(
                invoice=found["number"],
                amount=Money(amount_minor=amount),
                received_on=received_on,
                reference=form.reference or None,
            ),
        )
    except CommandFailed as refused:
        problems = FormProblems()
        where = {"amount": "amount", "received_on": "received_on", "reference": "reference"}
        field = where.get((refused.error.field or "").split(".")[0])
        if field:
            problems.by_field[field] = sentence(refused.error.message)
        else:
            problems.general.append(sentence(refused.error.message))
        return payment_page(request, found, form, problems, status=409)
    return redirect(f"/office/invoices/{found['number']}?done=payment")


def payment_page(
    request: Request,
    found: dict[str, Any],
    form: PaymentForm,
    problems: FormProblems,
    *,
    status: int = 200,
) -> Response:
    return office_render(
        request,
        "office/invoicing/payment.html",
        {"invoice": found, "form": form, "problems": problems},
        status=status,
    )


async def void(request: Request) -> Response:
    found = await document(request)
    if found is None:
        return no_invoice(request)
    form, problems = VoidForm(), FormProblems()
    status = 200
    if request.method == "POST":
        form_data = await request.form()
        check_csrf(request, form_data)
        form, problems = VoidForm.read(form_data)
        status = 400
        if not problems:
            try:
                await ask(request, VoidInvoice(invoice=found["number"], reason=form.reason))
            except CommandFailed as refused:
                problems.general.append(sentence(refused.error.message))
                status = 409
            else:
                return redirect(f"/office/invoices/{found['number']}?done=void")
    return office_render(
        request,
        "office/invoicing/void.html",
        {"invoice": found, "form": form, "problems": problems},
        status=status,
    )


routes = [
    page("/invoicing", runs, roles=FINANCE, name="invoicing"),
    page("/invoicing/preview", preview, roles=FINANCE, name="invoicing_preview"),
    page("/invoicing/runs", start_run, roles=FINANCE, methods=("POST",), name="start_run"),
    page("/invoicing/runs/{run_id}", run, roles=FINANCE, name="invoicing_run"),
    page("/invoices", invoices, roles=FINANCE, name="invoices"),
    page("/invoices/{number}", invoice, roles=FINANCE, name="invoice"),
    page(
        "/invoices/{number}/payment",
        payment,
        roles=FINANCE,
        methods=("GET", "POST"),
        name="payment",
    ),
    page("/invoices/{number}/void", void, roles=FINANCE, methods=("GET", "POST"), name="void"),
]
