"""Forms apart from views: what a person typed, checked for shape only (present, not
too long, no control characters), and turned into a command. Whether the booking
may happen is the events service's to say; its refusal lands on the field it names."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData, ImmutableMultiDict

from contracts.events_v1 import BookPlace, Channel

# Control characters (C0 and C1) have no place in a one-line field.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

MESSAGES = {
    "name": "Enter your full name",
    "email": "Enter an email address in the correct format, like name@example.com",
    "phone": "Enter a UK mobile number, like 07700 900 982, or leave it blank",
    "organisation_name": "Enter the name of your organisation",
    "member_id": "Select your organisation from the list",
}


@dataclass
class FormProblems:
    """Messages keyed by form field, in the order the form shows them."""

    by_field: dict[str, str] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.by_field or self.general)

    def summary(self) -> list[dict[str, str]]:
        """Items for the GOV.UK error summary: each links to its field."""
        items = [{"text": text, "href": f"#{name}"} for name, text in self.by_field.items()]
        return [{"text": text} for text in self.general] + items


def text_value(
    form: ImmutableMultiDict[str, Any], name: str, max_length: int
) -> tuple[str, str | None]:
    """The field's text (of a form, or of an address's query), trimmed, and a problem
    with its shape if it has one."""
    raw = form.get(name)
    value = raw if isinstance(raw, str) else ""
    if CONTROL.search(value):
        return CONTROL.sub("", value).strip()[:max_length], "Remove the special characters"
    value = value.strip()
    if len(value) > max_length:
        return value[:max_length], f"Enter no more than {max_length} characters"
    return value, None


@dataclass
class BookingForm:
    """The booking form: name, email, mobile, SMS opt-in, organisation."""

    name: str = ""
    email: str = ""
    phone: str = ""
    sms: bool = False
    member_id: str = ""
    organisation_name: str = ""

    LIMITS = {"name": 200, "email": 320, "phone": 40, "member_id": 40, "organisation_name": 200}

    @classmethod
    def read(cls, form: FormData) -> tuple[BookingForm, FormProblems]:
        problems = FormProblems()
        values: dict[str, Any] = {}
        for name, limit in cls.LIMITS.items():
            values[name], problem = text_value(form, name, limit)
            if problem:
                problems.by_field[name] = problem
        values["sms"] = form.get("sms") == "yes"
        booking = cls(**values)
        for required in ("name", "email"):
            if not values[required] and required not in problems.by_field:
                problems.by_field[required] = MESSAGES[required]
        return booking, problems

    def command(
        self, event_id: str, channel: Channel = "web"
    ) -> tuple[BookPlace | None, FormProblems]:
        """The BookPlace this form asks for, or the fields the contract refuses: a person's
        own booking on the site (``web``), or one staff take for them."""
        try:
            return (
                BookPlace(
                    event_id=event_id,
                    name=self.name,
                    email=self.email,
                    phone=self.phone or None,
                    sms=self.sms,
                    member_id=self.member_id or None,
                    organisation_name=None if self.member_id else (self.organisation_name or None),
                    channel=channel,
                ),
                FormProblems(),
            )
        except ValidationError as error:
            problems = FormProblems()
            for problem in error.errors():
                name = str(problem["loc"][0]) if problem["loc"] else ""
                problems.by_field.setdefault(
                    self.form_field(name), MESSAGES.get(name, "Check this answer")
                )
            return None, problems

    def form_field(self, command_field: str | None) -> str:
        """Where a refusal naming ``command_field`` is shown on this form."""
        if command_field == "organisation_name" and self.member_id:
            return "member_id"
        if command_field in self.LIMITS or command_field == "sms":
            return command_field
        return ""


def sentence(message: str) -> str:
    """A service's message as the form shows it: a capital first letter."""
    return message[:1].upper() + message[1:] if message else message


@dataclass
class LookupForm:
    """Find a booking by its reference and the email it was made with."""

    reference: str = ""
    email: str = ""

    @classmethod
    def read(cls, form: FormData) -> tuple[LookupForm, FormProblems]:
        problems = FormProblems()
        reference, problem = text_value(form, "reference", 20)
        if problem or not re.fullmatch(r"[A-Za-z0-9]{4,20}", reference):
            problems.by_field["reference"] = (
                problem or "Enter your booking reference, like B7K3M9QX"
            )
        email, problem = text_value(form, "email", 320)
        if problem or "@" not in email:
            problems.by_field["email"] = problem or MESSAGES["email"]
        return cls(reference=reference.upper(), email=email), problems
