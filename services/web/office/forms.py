"""The back office's forms, apart from its views: what staff typed, checked for shape
only and turned into a command. Whether it may happen is the owning service's to say;
its refusal lands on the field it names."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from starlette.datastructures import FormData

from contracts.events_v1 import CreateEvent, UpdateEvent
from contracts.money import Money
from services.web.forms import BookingForm, FormProblems, sentence, text_value

C = TypeVar("C", CreateEvent, UpdateEvent)

AMOUNT = re.compile(r"£?\s*(\d{1,3}(,\d{3})+|\d+)(\.\d{1,2})?")


def pence(text: str) -> int | None:
    """'1,000.50', '£20' or '20.5' as pence; None if it is not an amount of money."""
    raw = text.strip()
    if not AMOUNT.fullmatch(raw):
        return None
    whole, _, fraction = raw.replace("£", "").replace(",", "").strip().partition(".")
    return int(whole) * 100 + (int(fraction.ljust(2, "0")) if fraction else 0)


@dataclass
class SignInForm:
    email: str = ""
    password: str = ""

    @classmethod
    def read(cls, form: FormData) -> tuple[SignInForm, FormProblems]:
        problems = FormProblems()
        email, problem = text_value(form, "email", 320)
        if problem or not email:
            problems.by_field["email"] = problem or "Enter your email address"
        raw = form.get("password")
        password = raw if isinstance(raw, str) else ""
        if not password:
            problems.by_field["password"] = "Enter your password"
        elif len(password) > 256:
            problems.by_field["password"] = "Enter no more than 256 characters"
        return cls(email=email, password=password), problems


@dataclass
class DateFields:
    """A GOV.UK date input's three fields, as typed."""

    day: str = ""
    month: str = ""
    year: str = ""

    @classmethod
    def read(cls, form: FormData, prefix: str) -> DateFields:
        values = [text_value(form, f"{prefix}-{part}", 4)[0] for part in ("day", "month", "year")]
        return cls(*values)

    @classmethod
    def of(cls, day: date) -> DateFields:
        return cls(str(day.day), str(day.month), str(day.year))

    def value(self) -> date | None:
        try:
            return date(int(self.year), int(self.month), int(self.day))
        except ValueError:
            return None


@dataclass
class PaymentForm:
    """Money received against an invoice: how much, when, and the bank's reference."""

    amount: str = ""
    received: DateFields | None = None
    reference: str = ""

    @classmethod
    def read(cls, form: FormData) -> tuple[PaymentForm, FormProblems, int | None, date | None]:
        problems = FormProblems()
        amount, problem = text_value(form, "amount", 20)
        amount_pence = pence(amount) if not problem else None
        if problem or not amount_pence:
            problems.by_field["amount"] = problem or "Enter the amount received, like 1,000.00"
        received = DateFields.read(form, "received_on")
        received_on = received.value()
        if received_on is None:
            problems.by_field["received_on"] = "Enter the date the money arrived, like 27 3 2027"
        reference, problem = text_value(form, "reference", 100)
        if problem:
            problems.by_field["reference"] = problem
        return (
            cls(amount=amount, received=received, reference=reference),
            problems,
            amount_pence,
            received_on,
        )


@dataclass
class VoidForm:
    reason: str = ""

    @classmethod
    def read(cls, form: FormData) -> tuple[VoidForm, FormProblems]:
        problems = FormProblems()
        reason, problem = text_value(form, "reason", 200)
        if problem or len(reason) < 3:
            problems.by_field["reason"] = problem or "Say why the invoice is void"
        return cls(reason=reason), problems


# Events

LONDON = ZoneInfo("Europe/London")
CLOCK = re.compile(r"([01]?\d|2[0-3])[:.]([0-5]\d)")
# Line breaks and tabs are fine in a paragraph; other control characters are not.
PARAGRAPH_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
EVENT_LIMITS = {
    "title": 200,
    "venue": 300,
    "online_url": 500,
    "capacity": 6,
    "member_price": 20,
    "non_member_price": 20,
    "places_per_organisation": 6,
}
# Where a refusal naming a command's field is shown on the event form.
EVENT_FIELDS = {
    "title": "title",
    "kind": "kind",
    "programme": "programme",
    "description": "description",
    "starts_at": "held_on",
    "ends_at": "end_time",
    "venue": "venue",
    "online_url": "online_url",
    "capacity": "capacity",
    "member_price": "member_price",
    "non_member_price": "non_member_price",
    "places_per_organisation": "places_per_organisation",
}


def paragraph_value(form: FormData, name: str, max_length: int) -> tuple[str, str | None]:
    """A textarea's text, trimmed, with its line breaks, and a problem with its shape."""
    raw = form.get(name)
    value = (raw if isinstance(raw, str) else "").replace("\r\n", "\n")
    if PARAGRAPH_CONTROL.search(value):
        return PARAGRAPH_CONTROL.sub("", value).strip()[:max_length], (
            "Remove the special characters"
        )
    value = value.strip()
    if len(value) > max_length:
        return value[:max_length], f"Enter no more than {max_length} characters"
    return value, None


def clock_time(text: str) -> time | None:
    """'9:30', '09:30' or '14.05' on the 24-hour clock; None if it is not a time."""
    found = CLOCK.fullmatch(text.strip())
    return time(int(found.group(1)), int(found.group(2))) if found else None


def london_instant(day: date, at: time) -> datetime:
    """A date and time as people in the partnership mean them, as the UTC instant."""
    return datetime.combine(day, at, LONDON).astimezone(UTC)


def price(text: str) -> int | None:
    """A price as pence: '0', 'free', '95' or '£95.50'; None if it is not one."""
    return 0 if text.strip().lower() == "free" else pence(text)


@dataclass
class EventForm:
    """An event as the events officer types it: London date and times, prices in pounds.

    Checked for shape (present, a date, a time, a number, not too long); whether the
    event makes sense (ends after it starts, somewhere to meet) is the events service's.
    """

    title: str = ""
    kind: str = ""
    programme: str = ""
    description: str = ""
    held_on: DateFields | None = None
    start_time: str = ""
    end_time: str = ""
    venue: str = ""
    online_url: str = ""
    capacity: str = ""
    member_price: str = "0"
    non_member_price: str = ""
    places_per_organisation: str = ""
    waiting_list: bool = True

    @classmethod
    def read(
        cls, form: FormData, *, kinds: Iterable[str], programmes: Iterable[str]
    ) -> tuple[EventForm, FormProblems]:
        """The form as typed; ``kinds`` and ``programmes`` are the choices offered (none
        when editing: an event keeps its kind and programme)."""
        problems = FormProblems()
        values: dict[str, str] = {}
        for name, limit in EVENT_LIMITS.items():
            values[name], problem = text_value(form, name, limit)
            if problem:
                problems.by_field[name] = problem
        description, problem = paragraph_value(form, "description", 5000)
        if problem:
            problems.by_field["description"] = problem
        start_time = text_value(form, "start_time", 5)[0]
        end_time = text_value(form, "end_time", 5)[0]
        choices = {"kind": set(kinds), "programme": set(programmes)}
        chosen = {name: text_value(form, name, 40)[0] for name in choices}
        event = cls(
            description=description,
            held_on=DateFields.read(form, "held_on"),
            start_time=start_time,
            end_time=end_time,
            waiting_list=form.get("waiting_list") == "yes",
            **chosen,
            **values,
        )
        if "title" not in problems.by_field and len(event.title) < 3:
            problems.by_field["title"] = "Enter a title of at least 3 characters"
        for name, words in (("kind", "what kind of event it is"), ("programme", "its programme")):
            if choices[name] and chosen[name] not in choices[name]:
                problems.by_field[name] = f"Select {words}"
        if event.held_on is None or event.held_on.value() is None:
            problems.by_field["held_on"] = "Enter the date it happens, like 12 11 2026"
        if clock_time(start_time) is None:
            problems.by_field["start_time"] = "Enter the start time on the 24-hour clock, like 9:30"
        if clock_time(end_time) is None:
            problems.by_field["end_time"] = "Enter the end time on the 24-hour clock, like 16:00"
        if "capacity" not in problems.by_field and not event.capacity.isdigit():
            problems.by_field["capacity"] = "Enter the number of places, like 30"
        for name, who in (("member_price", "members"), ("non_member_price", "everyone else")):
            if name not in problems.by_field and price(values[name]) is None:
                problems.by_field[name] = f"Enter the price for {who}, like 95.00, or 0 if free"
        limit = event.places_per_organisation
        if "places_per_organisation" not in problems.by_field and limit and not limit.isdigit():
            problems.by_field["places_per_organisation"] = (
                "Enter the most places one organisation may hold, like 3, or leave it blank"
            )
        return event, problems

    @classmethod
    def of(cls, event: dict[str, Any]) -> EventForm:
        """The form filled in with an event as the events service shows it."""
        starts = datetime.fromisoformat(event["starts_at"]).astimezone(LONDON)
        ends = datetime.fromisoformat(event["ends_at"]).astimezone(LONDON)
        limit = event.get("places_per_organisation")
        return cls(
            title=event["title"],
            kind=event["kind"],
            programme=event["programme"],
            description=event.get("description") or "",
            held_on=DateFields.of(starts.date()),
            start_time=f"{starts:%H:%M}",
            end_time=f"{ends:%H:%M}",
            venue=event.get("venue") or "",
            online_url=event.get("online_url") or "",
            capacity=str(event["capacity"]),
            member_price=pounds_typed(event["member_price_minor"]),
            non_member_price=pounds_typed(event["non_member_price_minor"]),
            places_per_organisation=str(limit) if limit else "",
            waiting_list=event.get("waiting_list", True),
        )

    def times(self) -> tuple[datetime, datetime]:
        """Start and end as UTC instants (call after ``read`` found no problem). An end
        earlier in the day than the start is the events service's to refuse."""
        assert self.held_on is not None
        day = self.held_on.value()
        start, end = clock_time(self.start_time), clock_time(self.end_time)
        assert day is not None and start is not None and end is not None
        return london_instant(day, start), london_instant(day, end)

    def details(self) -> dict[str, Any]:
        """The fields CreateEvent and UpdateEvent share, as the contract has them."""
        starts_at, ends_at = self.times()
        member, non_member = price(self.member_price), price(self.non_member_price)
        assert member is not None and non_member is not None
        return {
            "title": self.title,
            "description": self.description,
            "starts_at": starts_at,
            "ends_at": ends_at,
            "capacity": int(self.capacity),
            "member_price": Money(amount_minor=member),
            "non_member_price": Money(amount_minor=non_member),
        }

    def create_command(self) -> tuple[CreateEvent | None, FormProblems]:
        return self._command(
            lambda: CreateEvent(
                kind=self.kind,  # type: ignore[arg-type]
                programme=self.programme,  # type: ignore[arg-type]
                venue=self.venue or None,
                online_url=self.online_url or None,
                places_per_organisation=int(self.places_per_organisation)
                if self.places_per_organisation
                else None,
                waiting_list=self.waiting_list,
                **self.details(),
            )
        )

    def update_command(self, event_id: str) -> tuple[UpdateEvent | None, FormProblems]:
        """Every field as the form has it: the events service changes only what differs,
        and an optional detail left blank is removed."""
        optional = {
            "venue": self.venue or None,
            "online_url": self.online_url or None,
            "places_per_organisation": int(self.places_per_organisation)
            if self.places_per_organisation
            else None,
        }
        return self._command(
            lambda: UpdateEvent(
                event_id=event_id,
                clear=[name for name, value in optional.items() if value is None],  # type: ignore[misc]
                **{name: value for name, value in optional.items() if value is not None},
                **self.details(),
            )
        )

    @staticmethod
    def form_field(command_field: str | None) -> str:
        """Where a refusal naming ``command_field`` is shown; "" for the top of the form."""
        return EVENT_FIELDS.get(command_field or "", "")

    def _command(self, make: Callable[[], C]) -> tuple[C | None, FormProblems]:
        try:
            return make(), FormProblems()
        except ValidationError as error:
            problems = FormProblems()
            for problem in error.errors():
                name = str(problem["loc"][0]) if problem["loc"] else ""
                where = self.form_field(name)
                if where:
                    problems.by_field.setdefault(where, sentence(problem["msg"]))
                else:
                    problems.general.append(sentence(problem["msg"]))
            return None, problems


def pounds_typed(amount: int) -> str:
    """Pence as an officer would type the price: 9500 → '95.00', 0 → '0'."""
    return "0" if amount == 0 else f"{amount // 100}.{amount % 100:02d}"


@dataclass
class CancelEventForm:
    """Why the event is cancelled, in words the people booked will read."""

    reason: str = ""

    @classmethod
    def read(cls, form: FormData) -> tuple[CancelEventForm, FormProblems]:
        problems = FormProblems()
        reason, problem = paragraph_value(form, "reason", 500)
        if problem or len(reason) < 3:
            problems.by_field["reason"] = problem or "Say why the event is cancelled"
        return cls(reason=reason), problems


@dataclass
class StaffBookingForm(BookingForm):
    """A booking taken for someone by phone or face to face: the booking form, and how
    it reached the partnership."""

    channel: str = ""

    CHANNELS = {"phone": "By phone", "in-person": "In person"}

    @classmethod
    def read(cls, form: FormData) -> tuple[StaffBookingForm, FormProblems]:
        booking, problems = BookingForm.read(form)
        channel = text_value(form, "channel", 20)[0]
        if channel not in cls.CHANNELS:
            problems.by_field["channel"] = "Select how the booking reached you"
        return cls(**{**vars(booking), "channel": channel}), problems
