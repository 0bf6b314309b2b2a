"""A person's rights over what the subscriptions service holds on them: erasure
(``PersonErasureRequested``) and subject access (``ExportPersonFromSubscriptions``).

What erasure removes and what the law keeps is ``domain.people``'s to say; this module
finds the person in the store and applies it, in the handler's one transaction.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import derived_message_id
from contracts.people_v1 import (
    ExportPersonFromSubscriptions,
    PersonErasedFromSubscriptions,
    PersonErasureRequested,
)
from contracts.personal import is_erased_email
from kernel.applier import HandlerContext
from kernel.commands import CommandContext
from services.subscriptions import store
from services.subscriptions.domain.people import (
    Person,
    amount,
    is_own_customer,
    names_to_find,
    needles,
    only_counted,
    scrub,
    stand_in_email,
)
from services.subscriptions.store import Base, Invoice, InvoiceLine, Member, Membership


@dataclass
class Holdings:
    """Everything the store holds that names one person."""

    contacts: list[tuple[Member, Membership]] = field(default_factory=list)
    phones: list[Member] = field(default_factory=list)
    lines: list[InvoiceLine] = field(default_factory=list)
    documents: list[Invoice] = field(default_factory=list)
    mentions: list[tuple[Base, str]] = field(default_factory=list)

    def booker_names(self, invoice_id: str | None = None) -> set[str]:
        """The names the person booked under: on every line naming them, or on one document's."""
        return {
            line.booker_name
            for line in self.lines
            if line.booker_name and (invoice_id is None or line.invoice_id == invoice_id)
        }


async def holdings_of(session: AsyncSession, person: Person) -> Holdings:
    """Find the person: as a member's billing contact (and that contact's phone), as the
    booker on a booking's line, as the addressee of an invoice or credit note, and
    mentioned in free text by their email, phone or a name they booked under (which also
    finds the lines that name them without their email)."""
    held = Holdings(
        contacts=await store.memberships_billed_to(session, person.email),
        lines=await store.lines_booked_by(session, person.email),
    )
    # Lines issued before they kept the booker's email name them only; the names the
    # person booked under since find those.
    held.lines += await store.lines_named_without_email(session, names_to_find(held.booker_names()))
    contact_of = {member.id for member, _ in held.contacts}
    # The member's phone is its billing contact's: theirs if they are or were the
    # contact (a change of contact leaves the phone as it was), or if it is their number.
    held.phones = [
        member
        for member in await store.members_with_phone(session)
        if member.id in contact_of or person.has_phone(member.phone)
    ]
    held.documents = await store.documents_to(
        session, person.email, also=[line.invoice_id for line in held.lines]
    )
    held.mentions = await store.mentioning(session, needles(person, held.booker_names()))
    return held


async def erase(session: AsyncSession, person: Person) -> tuple[dict[str, int], dict[str, int]]:
    """Redact the person from the store; returns what was erased and what kept, by kind."""
    held = await holdings_of(session, person)
    names = held.booker_names()
    erased: Counter[str] = Counter()
    kept: Counter[str] = Counter()
    for _, membership in held.contacts:
        membership.billing_email = stand_in_email(membership.id)
        erased["billing_contacts"] += 1
    for member in held.phones:
        member.phone = None
        erased["contact_phones"] += 1
    for document in held.documents:
        # Kept whole, money and all, for HMRC; only the person's email goes. The name
        # billed stays: an organisation's, or the person's own where they were billed.
        kept["invoices" if document.kind == "invoice" else "credit_notes"] += 1
        if is_own_customer(  # asked of its lines before they are cleared below
            member_id=document.member_id,
            billed_name=document.billed_name,
            booker_names=held.booker_names(document.id),
        ):
            kept["customer_names"] += 1
        if person.has_email(document.billing_email):
            document.billing_email = stand_in_email(document.id)
            erased["document_emails"] += 1
    for line in held.lines:
        line.booker_name = None
        line.booker_email = None
        erased["booker_names"] += 1
    for row, column in held.mentions:
        before = getattr(row, column)
        after = scrub(before, person, names)
        if after != before:
            setattr(row, column, after)
            erased["mentions"] += 1
    await session.flush()
    return only_counted(dict(erased)), only_counted(dict(kept))


async def erase_person(fact: PersonErasureRequested, ctx: HandlerContext) -> None:
    """When an operator asks for a person to be erased: replace their email with an
    undeliverable stand-in wherever they are a member's billing contact or the addressee
    of an invoice or credit note, clear that contact's phone and their name and email on
    booking lines, and scrub mentions of them from free text; then say so with
    ``PersonErasedFromSubscriptions``, once per request (also when nothing was held, and
    for a request whose email is already an erased stand-in, which changes nothing).

    Invoices and credit notes are kept, with their numbers, lines, totals, VAT, payments
    and the customer's name and address, as HMRC requires; so are the members, their
    tiers and memberships.
    """
    erased: dict[str, int] = {}
    kept: dict[str, int] = {}
    if not is_erased_email(fact.email):
        erased, kept = await erase(ctx.session, Person.asking(str(fact.email), fact.phone))
    await ctx.publish(
        PersonErasedFromSubscriptions(erasure_id=fact.erasure_id, erased=erased, kept=kept),
        id=derived_message_id("PersonErasedFromSubscriptions", fact.erasure_id),
    )


async def export_person(
    command: ExportPersonFromSubscriptions, ctx: CommandContext
) -> dict[str, Any]:
    """Everything held on a person (right of access): the members whose billing contact
    they are, the invoices and credit notes sent to them or naming them, their booking
    charges and free text mentioning them. Empty records for a person never known;
    changes nothing."""
    person = Person.asking(str(command.email), command.phone)
    held = await holdings_of(ctx.session, person)
    numbers = {document.id: document for document in held.documents}
    records = {
        "members": _members(held),
        "invoices": [_document(d) for d in held.documents if d.kind == "invoice"],
        "credit_notes": [_document(d) for d in held.documents if d.kind == "credit_note"],
        "booking_charges": [_booking_charge(line, numbers[line.invoice_id]) for line in held.lines],
        "mentions": [
            {"in": f"{row.__tablename__}.{column}", "text": getattr(row, column)}
            for row, column in held.mentions
        ],
    }
    return {"service": "subscriptions", "records": {k: rows for k, rows in records.items() if rows}}


def _iso(day: Any) -> str | None:
    return day.isoformat() if day is not None else None


def _members(held: Holdings) -> list[dict[str, Any]]:
    members: dict[str, dict[str, Any]] = {}
    for member in held.phones:
        members[member.id] = {
            "member_id": member.id,
            "name": member.name,
            "phone": member.phone,
            "memberships": [],
        }
    for member, membership in held.contacts:
        record = members.setdefault(
            member.id,
            {"member_id": member.id, "name": member.name, "phone": None, "memberships": []},
        )
        record["memberships"].append(
            {
                "membership_id": membership.id,
                "tier": membership.tier,
                "starts_on": _iso(membership.starts_on),
                "ends_on": _iso(membership.ends_on),
                "billing_email": membership.billing_email,
                "billing_address": membership.billing_address,
            }
        )
    return sorted(members.values(), key=lambda record: record["name"])


def _document(document: Invoice) -> dict[str, Any]:
    return {
        "number": document.display_number,
        "purpose": document.purpose,
        "issued_on": _iso(document.issued_on),
        "due_on": _iso(document.due_on),
        "billed_name": document.billed_name,
        "billing_email": document.billing_email,
        "billing_address": document.billing_address,
        "net": amount(document.net_pence),
        "vat": amount(document.vat_pence),
        "gross": amount(document.gross_pence),
        "paid": amount(document.paid_pence),
        "outstanding": amount(document.balance_pence),
        "status": document.status,
    }


def _booking_charge(line: InvoiceLine, document: Invoice) -> dict[str, Any]:
    return {
        "document": document.display_number,
        "booking_id": document.booking_id,
        "issued_on": _iso(document.issued_on),
        "description": line.description,
        "booker_name": line.booker_name,
        "booker_email": line.booker_email,
        "net": amount(line.net_pence),
        "vat": amount(line.vat_pence),
        "gross": amount(line.net_pence + line.vat_pence),
    }
