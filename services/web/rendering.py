"""Pages from Jinja2 templates: the site's own, and the GOV.UK Frontend macros
(``govuk-frontend-jinja``) under ``govuk_frontend_jinja/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, PrefixLoader
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

TEMPLATES = Path(__file__).parent / "templates"

PROGRAMMES = {
    "business_process_improvement": "Business Process Improvement",
    "project_and_programme_management": "Right Track North West project management",
    "customer_service": "Customer Service Management",
    "information_sharing_and_security": "Information Sharing and Security",
}
KINDS = {
    "workshop": "Workshop",
    "seminar": "Seminar",
    "forum": "Forum meeting",
    "training_course": "Training course",
    "conference": "Conference",
}


def pages(partnership: str) -> Jinja2Templates:
    environment = Environment(
        loader=ChoiceLoader(
            [
                FileSystemLoader(TEMPLATES),
                PrefixLoader({"govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja")}),
            ]
        ),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # templates ship with the code: no stat() of each file per page
    )
    environment.globals.update(partnership=partnership, programmes=PROGRAMMES, kinds=KINDS)
    return Jinja2Templates(env=environment)


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.pages
    return templates.TemplateResponse(
        request,
        name,
        {"csrf_token": request.state.csrf_token, **(context or {})},
        status_code=status,
    )
