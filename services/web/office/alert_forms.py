"""The alerts officer's forms, apart from their views: a contact, a contact's topics and
consents, and a broadcast. Checked for shape only (present, not too long, one of the
choices offered); whether it may happen is the notifications service's to say, and its
refusal lands on the field it names."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData

from contracts.notifications_v1 import (
    TOPICS,
    AddContact,
    PreviewBroadcast,
    SendBroadcast,
    Subscribe,
    Unsubscribe,
)
from services.web.forms import FormProblems, sentence, text_value
from services.web.office.forms import paragraph_value

CHANNELS = {"email": "Email", "sms": "SMS (text message)"}
# What the composer writes: the values a template may ask of it.
WRITTEN = ("headline", "body")
HEADLINE_MAX = 200
BODY_MAX = 5000


def chosen(form: FormData, name: str, offered: Iterable[str]) -> list[str]:
    """The ticked boxes called ``name`` that are among those ``offered``, in that order."""
    ticked = {value for value in form.getlist(name) if isinstance(value, str)}
    return [value for value in offered if value in ticked]


def on_field(problems: FormProblems, where: str, message: str) -> None:
    """A service's (or the contract's) message on the form field ``where``; at the top
    of the form if there is no such field."""
    if where:
        problems.by_field.setdefault(where, sentence(message))
    else:
        problems.general.append(sentence(message))


@dataclass
class ContactForm:
    """A contact as the alerts officer types it: a new one, or one whose details change
    (AddContact updates the contact with that email)."""

    email: str = ""
    name: str = ""
    organisation: str = ""
    mobile: str = ""
    channels: list[str] = field(default_factory=lambda: ["email"])
    topics: list[str] = field(default_factory=list)

    LIMITS = {"email": 320, "name": 200, "organisation": 200, "mobile": 40}
    # Where a refusal naming the command's field is shown on the form.
    FIELDS = {
        "email": "email",
        "name": "name",
        "organisation": "organisation",
        "mobile": "mobile",
        "topics": "topics",
        "sms_consent": "channels",
        "email_consent": "channels",
    }

    @classmethod
    def of(cls, contact: dict[str, Any]) -> ContactForm:
        """The form filled in with a contact as the notifications service shows it."""
        return cls(
            email=contact["email"] or "",
            name=contact.get("name") or "",
            organisation=contact.get("organisation") or "",
            mobile=contact.get("mobile") or "",
            channels=[channel for channel in CHANNELS if contact.get(f"{channel}_consent", False)],
            topics=list(contact.get("topics") or []),
        )

    @classmethod
    def read(cls, form: FormData, *, email: str | None = None) -> tuple[ContactForm, FormProblems]:
        """The form as typed; ``email`` when it is a known contact's, which stays."""
        problems = FormProblems()
        values: dict[str, str] = {}
        for name, limit in cls.LIMITS.items():
            values[name], problem = text_value(form, name, limit)
            if problem:
                problems.by_field[name] = problem
        if email is not None:
            values["email"] = email
        elif "email" not in problems.by_field and "@" not in values["email"]:
            problems.by_field["email"] = (
                "Enter an email address in the correct format, like name@example.com"
            )
        contact = cls(
            **values,
            channels=chosen(form, "channels", CHANNELS),
            topics=chosen(form, "topics", TOPICS),
        )
        return contact, problems

    def command(self) -> tuple[AddContact | None, FormProblems]:
        try:
            return (
                AddContact(
                    email=self.email,
                    name=self.name or None,
                    organisation=self.organisation or None,
                    mobile=self.mobile or None,
                    email_consent="email" in self.channels,
                    sms_consent="sms" in self.channels,
                    topics=self.topics,
                ),
                FormProblems(),
            )
        except ValidationError as error:
            problems = FormProblems()
            for problem in error.errors():
                name = str(problem["loc"][0]) if problem["loc"] else ""
                on_field(problems, self.form_field(name), problem["msg"])
            return None, problems

    @classmethod
    def form_field(cls, command_field: str | None) -> str:
        return cls.FIELDS.get((command_field or "").split(".")[0], "")


@dataclass
class ChoicesForm:
    """A contact's topics and the channels they agree to, as ticked on their page."""

    topics: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, form: FormData) -> ChoicesForm:
        return cls(
            topics=chosen(form, "topics", TOPICS), channels=chosen(form, "channels", CHANNELS)
        )

    def changes(self, contact: dict[str, Any]) -> tuple[Subscribe | None, Unsubscribe | None]:
        """What differs from ``contact`` as commands: the topics and consents ticked now and
        not before (Subscribe), and those no longer ticked (Unsubscribe); None for no change."""
        had_topics = set(contact["topics"])
        had_channels = {channel for channel in CHANNELS if contact[f"{channel}_consent"]}
        ref = contact["contact_id"] or contact["email"]
        added = [t for t in self.topics if t not in had_topics]
        granted = [c for c in self.channels if c not in had_channels]
        left = [t for t in TOPICS if t in had_topics and t not in self.topics]
        withdrawn = [c for c in CHANNELS if c in had_channels and c not in self.channels]
        return (
            Subscribe(contact=ref, topics=added, channels=granted) if added or granted else None,  # type: ignore[arg-type]
            Unsubscribe(contact=ref, topics=left, channels=withdrawn)
            if left or withdrawn
            else None,  # type: ignore[arg-type]
        )


@dataclass
class BroadcastForm:
    """A broadcast as composed: to whom (a topic), how (channels), from which template,
    and what it says (a headline and a body)."""

    topic: str = ""
    channels: list[str] = field(default_factory=lambda: ["email"])
    template: str = "broadcast"
    headline: str = ""
    body: str = ""
    urgent: bool = False
    # The envelope id the send goes under, fixed when the page is first shown: a
    # second press of Send (a double click without JavaScript, a resubmitted form)
    # is the same command, answered with the same broadcast, sent once.
    sending_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    # Where a refusal naming the command's field is shown on the form. A value the
    # template could not be rendered with is in what was written.
    FIELDS = {
        "topic": "topic",
        "topics": "topic",
        "channels": "channels",
        "template": "template",
        "data": "body",
        "urgent": "urgent",
    }

    @classmethod
    def read(cls, form: FormData) -> BroadcastForm:
        """The form as typed, with a topic or channel not among those offered left
        unchosen (the templates are the notifications service's to know)."""
        topic = text_value(form, "topic", 60)[0]
        sending_id = str(form.get("sending_id") or "")
        if not _is_uuid(sending_id):
            sending_id = str(uuid.uuid4())
        return cls(
            sending_id=sending_id,
            topic=topic if topic in TOPICS else "",
            channels=chosen(form, "channels", CHANNELS),
            template=text_value(form, "template", 60)[0],
            headline=text_value(form, "headline", HEADLINE_MAX + 1)[0],
            body=paragraph_value(form, "body", BODY_MAX + 1)[0],
            urgent=form.get("urgent") == "yes",
        )

    def problems(self) -> FormProblems:
        """What must be put right before it can be sent."""
        problems = FormProblems()
        if not self.topic:
            problems.by_field["topic"] = "Select who the broadcast goes to"
        if not self.channels:
            problems.by_field["channels"] = "Select how it goes: by email, by SMS or both"
        if not self.template:
            problems.by_field["template"] = "Select a template"
        if not self.headline:
            problems.by_field["headline"] = "Enter a headline"
        elif len(self.headline) > HEADLINE_MAX:
            problems.by_field["headline"] = (
                f"Enter a headline of no more than {HEADLINE_MAX} characters"
            )
        if not self.body:
            problems.by_field["body"] = "Enter the message"
        elif len(self.body) > BODY_MAX:
            problems.by_field["body"] = f"Enter a message of no more than {BODY_MAX:,} characters"
        return problems

    def data(self) -> dict[str, str]:
        return {"headline": self.headline, "body": self.body}

    def preview_command(self) -> PreviewBroadcast:
        """The preview of what is typed so far: every channel of the template, so that the
        SMS is counted before SMS is chosen."""
        return PreviewBroadcast(
            topic=self.topic or None,
            template=self.template or "broadcast",
            data=self.data(),
        )

    def send_command(self) -> SendBroadcast:
        """Call after ``problems`` found none."""
        return SendBroadcast(
            topic=self.topic,
            channels=self.channels,  # type: ignore[arg-type]
            template=self.template,
            data=self.data(),
            urgent=self.urgent,
        )

    @classmethod
    def form_field(cls, command_field: str | None) -> str:
        return cls.FIELDS.get((command_field or "").split(".")[0], "")


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False
