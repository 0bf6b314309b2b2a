"""Operations: each service's health (its unsent facts, the work it owes, its consumers'
lag), the dead letters listed and shown, one sent back to the service it failed in, and
the audit log. The operator's pages. Each service answers for its own consumers and
dead letters, and redrives its own (``<service>.cmd.health``, ``.dead_letters``,
``.redrive``), and records a redrive in the audit stream with the staff member the
request names. The audit stream belongs to no service: the site reads it as
``vestry audit`` does, record by record, and never changes it (OPS is append-only)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import nats.errors
from starlette.requests import Request
from starlette.responses import Response

from contracts.system_v1 import (
    SERVICES,
    DeadLettersReport,
    DeadLettersRequest,
    RedriveReport,
    RedriveRequest,
    dead_letters_subject,
    redrive_subject,
)
from kernel.audit_log import brief, page_of_records
from services.web.forms import text_value
from services.web.office.door import office_render, page, redirect, refusal
from services.web.office.service_reports import letters_of, operate, service_health
from services.web.security import check_csrf

OPERATOR = ("operator",)
LETTERS_PAGE = 100
# A redrive applies the letter through the service's own path: longer than a page waits.
REDRIVE_TIMEOUT_S = 30.0
AUDIT_PAGE = 50
# The most records one audit page reads looking for matches; the next page goes on.
AUDIT_EXAMINED = 2_000
AUDIT_TIMEOUT_S = 5.0
OUTCOMES = {
    "applied": "The dead letter was applied: it has left the dead letters.",
    "skipped": "The message had been handled since: it has left the dead letters.",
    "failed": "It failed again and is back among the dead letters, with its count raised.",
    "not_found": "That dead letter had gone already: nothing was redriven.",
}


async def operations(request: Request) -> Response:
    health, letters = await asyncio.gather(
        service_health(request),
        asyncio.gather(
            *(letters_of(request, s, DeadLettersRequest(limit=LETTERS_PAGE)) for s in SERVICES)
        ),
    )
    return office_render(
        request,
        "office/operations/index.html",
        {
            "health": health,
            "letters": {
                service: (None if report is None else len(report.letters), report and report.next)
                for service, report in zip(SERVICES, letters, strict=True)
            },
        },
    )


async def dead_letters(request: Request) -> Response:
    """Every service's dead letters, oldest first, a page at a time: each answers for its
    own after the same DLQ sequence, and the page is the first of them all."""
    raw = request.query_params.get("after", "")
    after = int(raw) if raw.isdigit() and len(raw) < 19 else 0
    asked = DeadLettersRequest(after=after, limit=LETTERS_PAGE)
    reports = await asyncio.gather(*(letters_of(request, s, asked) for s in SERVICES))
    every = sorted(
        (letter for report in reports if report for letter in report.letters),
        key=lambda letter: letter.sequence,
    )
    shown = every[:LETTERS_PAGE]
    more = len(every) > LETTERS_PAGE or any(report and report.next for report in reports)
    outcome = request.query_params.get("outcome", "")
    return office_render(
        request,
        "office/operations/dead_letters.html",
        {
            "letters": shown,
            "silent": [s for s, report in zip(SERVICES, reports, strict=True) if report is None],
            "next_page": f"/office/operations/dead-letters?after={shown[-1].sequence}"
            if more and shown
            else None,
            "first_page": "/office/operations/dead-letters" if after else None,
            "outcome": OUTCOMES.get(outcome, ""),
            "redriven": request.query_params.get("letter", "")[:19],
        },
    )


async def find_letter(request: Request) -> tuple[str, int] | None:
    service = request.path_params["service"]
    sequence = request.path_params["sequence"]
    if service not in SERVICES or not sequence.isdigit() or not 0 < int(sequence) < 10**18:
        return None
    return service, int(sequence)


def no_letter(request: Request) -> Response:
    return refusal(
        request, 404, "Dead letter not found", "There is no such dead letter, or it has gone."
    )


async def dead_letter(request: Request) -> Response:
    found = await find_letter(request)
    if found is None:
        return no_letter(request)
    service, sequence = found
    report = DeadLettersReport.model_validate(
        await operate(request, dead_letters_subject(service), DeadLettersRequest(sequence=sequence))
    )
    if not report.letters:
        return no_letter(request)
    return office_render(
        request, "office/operations/dead_letter.html", {"letter": report.letters[0]}
    )


async def redrive(request: Request) -> Response:
    found = await find_letter(request)
    if found is None:
        return no_letter(request)
    service, sequence = found
    check_csrf(request, await request.form())
    report = RedriveReport.model_validate(
        await operate(
            request,
            redrive_subject(service),
            RedriveRequest(sequences=[sequence]),
            timeout=REDRIVE_TIMEOUT_S,
        )
    )
    return redirect(
        f"/office/operations/dead-letters?letter={sequence}&outcome={outcome_of(report)}"
    )


def outcome_of(report: RedriveReport) -> str:
    """What became of the one letter a redrive named."""
    if report.applied:
        return "applied"
    if report.skipped:
        return "skipped"
    if report.failed:
        return "failed"
    return "not_found"


async def audit(request: Request) -> Response:
    """The audit log, newest first, a page at a time, by action and by who did it."""
    query = request.query_params
    action, _ = text_value(query, "action", 64)
    by, _ = text_value(query, "by", 200)
    raw = query.get("before", "")
    before = int(raw) if raw.isdigit() and len(raw) < 19 and int(raw) > 0 else None
    js = request.app.state.nats.jetstream(timeout=AUDIT_TIMEOUT_S)
    try:
        rows, older = await page_of_records(
            js,
            before=before,
            action=action or None,
            by=by or None,
            limit=AUDIT_PAGE,
            examine=AUDIT_EXAMINED,
        )
    except (nats.errors.Error, TimeoutError):
        rows, older, unreachable = [], None, True
    else:
        unreachable = False
    for row in rows:
        row["result_text"] = brief(row["result"])
    kept = {key: value for key, value in (("action", action), ("by", by)) if value}
    return office_render(
        request,
        "office/operations/audit.html",
        {
            "rows": rows,
            "action": action,
            "by": by,
            "before": before,
            "unreachable": unreachable,
            "older_page": _audit_page({**kept, "before": older}) if older else None,
            "latest_page": _audit_page(kept) if before else None,
        },
        status=503 if unreachable else 200,
    )


def _audit_page(query: dict[str, object]) -> str:
    return "/office/operations/audit" + (f"?{urlencode(query)}" if query else "")


routes = [
    page("/operations", operations, roles=OPERATOR, name="operations"),
    page("/operations/audit", audit, roles=OPERATOR, name="audit"),
    page("/operations/dead-letters", dead_letters, roles=OPERATOR, name="dead_letters"),
    page(
        "/operations/dead-letters/{service}/{sequence}",
        dead_letter,
        roles=OPERATOR,
        name="dead_letter",
    ),
    page(
        "/operations/dead-letters/{service}/{sequence}/redrive",
        redrive,
        roles=OPERATOR,
        methods=("POST",),
        name="redrive",
    ),
]
