"""The back office's forms, apart from its views: what staff typed, checked for shape
only and turned into a command. Whether it may happen is the owning service's to say;
its refusal lands on the field it names."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from starlette.datastructures import FormData

from services.web.forms import FormProblems, text_value

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
