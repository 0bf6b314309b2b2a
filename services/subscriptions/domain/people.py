"""A person's rights over the books: what erasure removes, what the law keeps, and how a
person is recognised in them. Free of I/O.

UK GDPR Article 17 gives a person the right to have their data erased unless the law
requires it kept. HMRC requires invoices and credit notes to be kept for six years with
their numbers, lines, totals, VAT, payments and the customer's name and address. So:

- every invoice and credit note stays, its money untouched;
- the customer's name and postal address stay on it: the organisation's, or the
  person's own where they themselves were billed (a non-member's own booking);
- the person's email gives way to an undeliverable stand-in wherever it is, on a
  member's billing contact and on the documents sent to it;
- the name and email of a booker on a booking's line are removed, as are the phone
  of a member's billing contact and any mention of the person in free text (a
  payment's reference, a void reason, an address line "for the attention of").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from contracts.personal import (
    ERASED_EMAIL,
    ERASED_NAME,
    erased_email,
    is_erased_email,
    normalised_email,
)

# A name shorter than this, or of one word, is too likely to be part of other words
# ("Ann" in "Annual") to be searched for in free text; only lines keep such names
# apart, and those are cleared by email.
_SHORTEST_NAME_TO_FIND = 5


@dataclass(frozen=True)
class Person:
    """The person a request names, in the forms the books are searched in."""

    email: str
    phone: str | None = None

    @classmethod
    def asking(cls, email: str, phone: str | None = None) -> Person:
        return cls(normalised_email(email), phone_digits(phone))

    def has_email(self, address: str | None) -> bool:
        return bool(address) and normalised_email(str(address)) == self.email

    def has_phone(self, number: str | None) -> bool:
        return self.phone is not None and phone_digits(number) == self.phone

    def phone_forms(self) -> tuple[str, ...]:
        """How the phone may be written in free text: international, and UK national."""
        if self.phone is None:
            return ()
        forms = ["+" + self.phone]
        if self.phone.startswith("44"):
            forms.append("0" + self.phone[2:])
        return tuple(forms)


def phone_digits(number: str | None) -> str | None:
    """A phone number as its international digits, to compare however it was typed:
    '+44 7700 900123', '07700 900123' and '0044 7700 900123' are all '447700900123'."""
    if not number:
        return None
    digits = "".join(ch for ch in number if ch.isdigit())
    if number.strip().startswith("+"):
        return digits or None
    if digits.startswith("00"):
        return digits[2:] or None
    if digits.startswith("0"):  # a UK national number: members' billing contacts are in the UK
        return "44" + digits[1:]
    return digits or None


def stand_in_email(record_id: str) -> str:
    """The undeliverable address that replaces the person's on one record.

    Each record gets its own, from its own id, so that two records that named the
    same person cannot be linked through their stand-ins.
    """
    return erased_email(record_id)


def names_to_find(names: Iterable[str | None]) -> set[str]:
    """Of the names the person was known by, those safe to search free text for."""
    return {
        name.strip()
        for name in names
        if name
        and name.strip() != ERASED_NAME
        and len(name.strip()) >= _SHORTEST_NAME_TO_FIND
        and len(name.split()) >= 2
    }


def needles(person: Person, names: Iterable[str]) -> tuple[str, ...]:
    """What marks free text as mentioning the person: their email, phone and names."""
    return (person.email, *person.phone_forms(), *sorted(names_to_find(names)))


def scrub(text: str, person: Person, names: Iterable[str]) -> str:
    """``text`` with every mention of the person (email, phone, known names, in any
    case) replaced by the erased stand-ins; the rest of it as it was."""
    scrubbed = re.sub(re.escape(person.email), ERASED_EMAIL, text, flags=re.IGNORECASE)
    for found in (*person.phone_forms(), *sorted(names_to_find(names), key=len, reverse=True)):
        scrubbed = re.sub(re.escape(found), ERASED_NAME, scrubbed, flags=re.IGNORECASE)
    return scrubbed


def is_own_customer(*, member_id: str | None, billed_name: str, booker_names: set[str]) -> bool:
    """Whether the person is the legal customer of a document: not a member's, and billed
    in the name of the person who booked (a non-member booking with no organisation).

    The law keeps a customer's name and address on an invoice, so erasure leaves it."""
    return member_id is None and billed_name.strip() in {
        name.strip() for name in booker_names if name
    }


def booker_to_keep(name: str, email: str) -> tuple[str | None, str | None]:
    """The booker's name and email a booking's line keeps: none when the booker has been
    erased (a fact read after their key was deleted carries only stand-ins)."""
    if is_erased_email(email) or name == ERASED_NAME:
        return None, None
    return name, normalised_email(email)


def amount(pence: int) -> str:
    """Pence as a plain decimal string of pounds, for an export: '1234.50', '-12.00'."""
    sign = "-" if pence < 0 else ""
    whole, part = divmod(abs(pence), 100)
    return f"{sign}{whole}.{part:02d}"


def only_counted(counts: dict[str, int]) -> dict[str, int]:
    """``counts`` without the kinds of which there were none."""
    return {kind: n for kind, n in counts.items() if n}
