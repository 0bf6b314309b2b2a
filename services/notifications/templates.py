"""Rendering messages from Jinja2 templates: the shipped ones, or an operator's override.

Undefined variables are errors (StrictUndefined), HTML is autoescaped, and an
operator's directory is searched before the shipped one, so any single file
can be replaced without copying the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    UndefinedError,
    meta,
    select_autoescape,
)

from kernel import links
from kernel.settings import Settings

SHIPPED = Path(__file__).parent / "templates"


class TemplateProblem(Exception):
    """Raised when a message cannot be rendered: an unknown template or a missing variable."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def paragraphs(text: object) -> list[list[str]]:
    """Plain text as paragraphs of lines: a blank line (or several) ends a paragraph, a
    single newline breaks the line. Linear in the text's length, however long it is
    (the template had built its lists by concatenation: quadratic, 0.3 s for a 500 KB
    body of one paragraph, for each recipient)."""
    found: list[list[str]] = []
    lines: list[str] = []
    for line in str(text).splitlines():
        if line.strip():
            lines.append(line)
        elif lines:
            found.append(lines)
            lines = []
    if lines:
        found.append(lines)
    return found


class Templates:
    def __init__(
        self,
        overrides: Path | None = None,
        *,
        partnership: str = "",
        booking_url: Callable[[str], str] | None = None,
        pay_url: Callable[[str], str] | None = None,
    ) -> None:
        loaders = [FileSystemLoader(overrides)] if overrides else []
        self._env = Environment(
            loader=ChoiceLoader([*loaders, FileSystemLoader(SHIPPED)]),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
            keep_trailing_newline=False,
        )
        self._partnership = partnership
        # Templates call booking_url(reference) for the signed link to the booker's own page.
        self._env.globals["booking_url"] = booking_url or _unsigned_booking_url
        # ... and pay_url(number) for the signed "pay this invoice" link.
        self._env.globals["pay_url"] = pay_url or _unsigned_pay_url
        self._env.filters["paragraphs"] = paragraphs

    def names(self) -> dict[str, list[str]]:
        """Every message type found, with its channels."""
        found: dict[str, set[str]] = {}
        for name in self._env.list_templates(extensions=["j2"]):
            if name.startswith("_"):
                continue
            stem, part = name.rsplit(".", 2)[0], name.rsplit(".", 2)[1]
            if part == "subject":
                found.setdefault(stem, set()).add("email")
            elif part == "sms":
                found.setdefault(stem, set()).add("sms")
        return {name: sorted(channels) for name, channels in sorted(found.items())}

    def channels(self, name: str) -> list[str]:
        return self.names().get(name, [])

    def check(self, name: str, channels: list[str]) -> None:
        """Raise TemplateProblem unless ``name`` has a template for each of ``channels``."""
        known = self.names()
        if name not in known:
            raise TemplateProblem(
                "not_found",
                f"there is no template {name!r}; `vestry templates ls` lists {len(known)}",
                "template",
            )
        missing = [channel for channel in channels if channel not in known[name]]
        if missing:
            raise TemplateProblem(
                "invalid",
                f"template {name!r} has no {' or '.join(missing)} version; it has "
                f"{', '.join(known[name])}",
                "channels",
            )

    def email(self, name: str, context: dict[str, Any]) -> RenderedEmail:
        return RenderedEmail(
            subject=" ".join(self.render(f"{name}.subject.j2", context).split()),
            text=self.render(f"{name}.txt.j2", context),
            html=self.render(f"{name}.html.j2", context),
        )

    def sms(self, name: str, context: dict[str, Any]) -> str:
        return " ".join(self.render(f"{name}.sms.j2", context).split())

    def variables(self, name: str) -> set[str]:
        """The values the templates of message type ``name`` read from their context,
        every channel's file together (the partnership's name and the globals left out)."""
        found: set[str] = set()
        for filename in self._env.list_templates(extensions=["j2"]):
            if filename.rsplit(".", 2)[0] == name:
                source = self._env.loader.get_source(self._env, filename)[0]  # type: ignore[union-attr]
                found |= meta.find_undeclared_variables(self._env.parse(source))
        return found - {"partnership", *self._env.globals}

    def render(self, filename: str, context: dict[str, Any]) -> str:
        try:
            template = self._env.get_template(filename)
            return template.render({"partnership": self._partnership, **context})
        except TemplateNotFound:
            raise TemplateProblem(
                "not_found", f"there is no template file {filename}", "template"
            ) from None
        except UndefinedError as error:
            raise TemplateProblem(
                "invalid",
                f"{filename} needs a value the data does not give: {error.message}",
                "data",
            ) from None


def templates_for(settings: Settings, overrides: Path | None = None) -> Templates:
    """The templates as the running service renders them: its name, its signed links."""
    return Templates(
        overrides or settings.templates_dir,
        partnership=settings.partnership_name,
        booking_url=lambda reference: links.booking_url(
            settings.public_url, settings.link_secret, reference
        ),
        pay_url=lambda number: links.pay_url(settings.public_url, settings.link_secret, number),
    )


def _unsigned_pay_url(number: str) -> str:
    """For previews: the shape of the pay link, signed by nobody."""
    return f"https://vestry.invalid/pay/{number}"


def _unsigned_booking_url(reference: str) -> str:
    """For previews: the shape of the link, signed by nobody."""
    return f"https://vestry.invalid/bookings/{reference}"
