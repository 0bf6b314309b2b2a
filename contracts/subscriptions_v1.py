"""Messages owned by the subscriptions service, version 1."""

from __future__ import annotations

from datetime import date
from typing import Annotated, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from contracts.emails import EmailStr
from contracts.envelope import Message
from contracts.money import Money
from contracts.personal import PERSON_EMAIL, person_name
from contracts.registry import register

MemberName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=200)]
TierCode = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]


@register
class JoinMember(Message):
    """Command: enrol an organisation as a member at a tier.

    Answered with the new member's id, or an error (``invalid`` for a bad
    field, ``conflict`` when the name is already a member's).
    """

    TYPE: ClassVar[str] = "JoinMember"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "subscriptions.cmd.join_member"
    KIND: ClassVar[Literal["command"]] = "command"

    name: MemberName = Field(
        description="The organisation's name, unique in the partnership.",
        examples=["Greater Manchester Combined Authority"],
    )
    tier: TierCode = Field(
        description="Code of the tier the member joins at.", examples=["upper-tier"]
    )
    billing_email: EmailStr = Field(
        description="Where invoices go.", examples=["finance@example.gov.uk"]
    )
    joined_on: date = Field(
        description="First day of the membership (Europe/London calendar date)."
    )
    reference: str | None = Field(
        default=None,
        max_length=50,
        description="The member's own reference, e.g. a purchase order.",
    )
    phone: str | None = Field(
        default=None, max_length=30, description="Billing contact's phone number, if given."
    )


@register
class MembershipStarted(Message):
    """Fact: a membership began.

    Sent once when a member joins, in the same transaction that stores the
    membership. Not sent for a tier change (that is a change, not a start).
    """

    TYPE: ClassVar[str] = "MembershipStarted"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "subscriptions.membership.started"
    KIND: ClassVar[Literal["fact"]] = "fact"

    membership_id: str = Field(description="Id of the membership.")
    member_id: str = Field(description="Id of the member organisation.")
    member_name: str = Field(description="The organisation's name.")
    tier: str = Field(description="Tier code.")
    billing_email: Annotated[EmailStr, PERSON_EMAIL] = Field(description="Billing contact's email.")
    starts_on: date = Field(description="First day of the membership.")


@register
class MembershipChanged(Message):
    """Fact: a membership moved to another tier.

    Sent once per tier change, in the transaction that records it. Not sent
    when a member joins or leaves.
    """

    TYPE: ClassVar[str] = "MembershipChanged"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "subscriptions.membership.changed"
    KIND: ClassVar[Literal["fact"]] = "fact"

    membership_id: str = Field(description="Id of the membership.")
    member_id: str = Field(description="Id of the member organisation.")
    member_name: str = Field(description="The organisation's name.")
    old_tier: str = Field(description="Tier code before the change.")
    new_tier: str = Field(description="Tier code from the change.")
    effective_on: date = Field(description="First day at the new tier.")


@register
class MembershipEnded(Message):
    """Fact: a member left; its membership ends on ``ends_on``.

    Sent once, when the leaving is recorded. Not sent for a tier change.
    """

    TYPE: ClassVar[str] = "MembershipEnded"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "subscriptions.membership.ended"
    KIND: ClassVar[Literal["fact"]] = "fact"

    membership_id: str = Field(description="Id of the membership.")
    member_id: str = Field(description="Id of the member organisation.")
    member_name: str = Field(description="The organisation's name.")
    ends_on: date = Field(description="Last day of the membership.")


@register
class BillingContactChanged(Message):
    """Fact: a member's billing contact changed (email, postal address or purchase-order
    reference).

    Sent once per accepted ``ChangeBillingContact``, in its transaction. Not sent when a
    member joins or rejoins (``MembershipStarted`` carries the contact then).
    """

    TYPE: ClassVar[str] = "BillingContactChanged"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "subscriptions.membership.billing_contact_changed"
    KIND: ClassVar[Literal["fact"]] = "fact"

    membership_id: str = Field(description="Id of the membership.")
    member_id: str = Field(description="Id of the member organisation.")
    member_name: str = Field(description="The organisation's name.")
    billing_email: Annotated[EmailStr, PERSON_EMAIL] = Field(
        description="The billing email from now on."
    )
    previous_billing_email: Annotated[EmailStr, PERSON_EMAIL] = Field(
        description="The billing email until now."
    )
    billing_address: str | None = Field(description="The billing postal address, if any.")
    purchase_order: str | None = Field(description="The purchase-order reference, if any.")


# Membership commands beyond joining

MemberRef = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=200)]
InvoiceNumber = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20)
]
Year = Annotated[int, Field(ge=1990, le=2200)]


class _Command(Message):
    KIND: ClassVar[Literal["command"]] = "command"
    VERSION: ClassVar[int] = 1


@register
class ImportMembers(_Command):
    """Command: enrol many organisations at once, all or none.

    Answered with how many joined, or an error naming the first bad row (its
    1-based ``line`` in ``field``) when any row cannot join; then nobody joins.
    """

    TYPE: ClassVar[str] = "ImportMembers"
    SUBJECT: ClassVar[str] = "subscriptions.cmd.import_members"

    members: list[JoinMember] = Field(
        min_length=1, max_length=10_000, description="The members to enrol, in file order."
    )
    lines: list[int] = Field(
        default_factory=list, description="The file line of each member, for error messages."
    )


@register
class ChangeTier(_Command):
    """Command: move a member to another tier from a date.

    Answered with the credit note and invoice issued when the year was already
    billed, or an error (``not_found``, ``invalid``, ``ended``, ``no_price``).
    """

    TYPE: ClassVar[str] = "ChangeTier"
    SUBJECT: ClassVar[str] = "subscriptions.cmd.change_tier"

    member: MemberRef = Field(description="The member's id or name.")
    tier: TierCode = Field(description="Code of the new tier.")
    effective_on: date = Field(description="First day at the new tier (Europe/London date).")


@register
class LeaveMember(_Command):
    """Command: record that a member leaves; ``leaves_on`` is its last day.

    Answered with any refund credit note the catalog grants, or an error.
    """

    TYPE: ClassVar[str] = "LeaveMember"
    SUBJECT: ClassVar[str] = "subscriptions.cmd.leave_member"

    member: MemberRef = Field(description="The member's id or name.")
    leaves_on: date = Field(description="Last day of the membership (Europe/London date).")


@register
class ChangeBillingContact(_Command):
    """Command: change a member's billing contact: its email, postal address and the
    purchase-order reference shown on its invoices.

    A field left out stays as it is; an empty address or reference removes it.
    Invoices already issued keep what they were issued with; later invoices, credit
    notes, receipts and reminders go to the new contact. Answered with the contact
    as it now is, or refused (``not_found``, ``invalid`` when nothing is given).
    """

    TYPE: ClassVar[str] = "ChangeBillingContact"
    SUBJECT: ClassVar[str] = "subscriptions.cmd.change_billing_contact"

    member: MemberRef = Field(description="The member's id or name.")
    billing_email: EmailStr | None = Field(
        default=None, description="The new billing email.", examples=["ap@bury.example.gov.uk"]
    )
    billing_address: str | None = Field(
        default=None,
        max_length=500,
        description="The billing contact's postal address, lines separated by commas; "
        "empty to remove it.",
        examples=["Town Hall, Knowsley Street, Bury BL9 0SW"],
    )
    purchase_order: str | None = Field(
        default=None,
        max_length=50,
        description="The member's purchase-order reference, shown on its invoices; empty to "
        "remove it.",
        examples=["PO-2026-0412"],
    )


@register
class RejoinMember(_Command):
    """Command: a member that left joins again, as a new membership, from a date.

    Answered with the new membership's id, or refused: ``not_found``; ``conflict``
    while its membership has not ended; ``invalid`` for a date before its last
    membership ended, or an unknown tier.
    """

    TYPE: ClassVar[str] = "RejoinMember"
    SUBJECT: ClassVar[str] = "subscriptions.cmd.rejoin_member"

    member: MemberRef = Field(description="The member's id or name.")
    tier: TierCode = Field(description="Code of the tier it rejoins at.")
    joined_on: date = Field(description="First day of the new membership (Europe/London date).")
    billing_email: EmailStr | None = Field(
        default=None, description="Where invoices go; the last membership's if left out."
    )


@register
class ListMembers(_Command):
    """Query: the members, with their tier and whether they are current. Changes nothing."""

    TYPE: ClassVar[str] = "ListMembers"
    SUBJECT: ClassVar[str] = "subscriptions.cmd.list_members"

    tier: TierCode | None = Field(default=None, description="Only members at this tier.")


@register
class ShowMember(_Command):
    """Query: one member, its membership and its invoices. Changes nothing."""

    TYPE: ClassVar[str] = "ShowMember"
    SUBJECT: ClassVar[str] = "subscriptions.cmd.show_member"

    member: MemberRef = Field(description="The member's id or name.")


# Invoicing


@register
class RunInvoicing(_Command):
    """Command: bill every membership active in a financial year, once.

    A dry run answers with the preview by tier and changes nothing. A real run
    is recorded and answered at once with its ``run_id``; the service issues
    the invoices in chunks, and ``InvoiceRunStatus`` follows it. Refused with
    ``busy`` while another run of the same year is going, ``no_price`` when the
    catalog has no prices for the year.
    """

    TYPE: ClassVar[str] = "RunInvoicing"
    SUBJECT: ClassVar[str] = "subscriptions.cmd.run_invoicing"

    year: Year = Field(description="Financial year: 2026 is 1 Apr 2026 – 31 Mar 2027.")
    dry_run: bool = Field(default=False, description="Preview only: issue and number nothing.")
    issued_on: date | None = Field(
        default=None, description="Issue date printed on the invoices; today if left out."
    )


@register
class InvoiceRunStatus(_Command):
    """Query: a run's record (by id), or the runs of a year, newest first. Changes nothing."""

    TYPE: ClassVar[str] = "InvoiceRunStatus"
    SUBJECT: ClassVar[str] = "subscriptions.cmd.invoice_run_status"

    run_id: str | None = Field(default=None, description="One run's id.")
    year: Year | None = Field(default=None, description="Every run of this financial year.")


@register
class ListInvoices(_Command):
    """Query: invoices and credit notes, oldest number first. Changes nothing."""

    TYPE: ClassVar[str] = "ListInvoices"
    SUBJECT: ClassVar[str] = "subscriptions.cmd.list_invoices"

    year: Year | None = Field(default=None, description="Only this billing year.")
    status: Literal["issued", "part_paid", "paid", "void", "overdue"] | None = Field(
        default=None, description="Only invoices in this status ('overdue': unpaid past due)."
    )
    limit: int = Field(default=1000, ge=1, le=100_000, description="At most this many.")


@register
class ShowInvoice(_Command):
    """Query: one invoice or credit note with its lines and payments, optionally as HTML."""

    TYPE: ClassVar[str] = "ShowInvoice"
    SUBJECT: ClassVar[str] = "subscriptions.cmd.show_invoice"

    number: InvoiceNumber = Field(description="The document number, e.g. INV-000001 or 1.")
    html: bool = Field(default=False, description="Also render the printable HTML document.")


@register
class InvoiceSummary(_Command):
    """Query: a year's billed, paid and outstanding amounts by tier, and aged debt."""

    TYPE: ClassVar[str] = "InvoiceSummary"
    SUBJECT: ClassVar[str] = "subscriptions.cmd.invoice_summary"

    year: Year = Field(description="Financial year.")
    on: date | None = Field(default=None, description="Age debt as at this day; today if left out.")


DocumentFormat = Literal["pdf", "html"]


@register
class ShowDocument(_Command):
    """Query: an invoice or credit note as the document its billing contact receives.
    Changes nothing.

    Answered with the number, the kind, a file name, the media type, the content in
    base64 and its SHA-256. The PDF is printed from the HTML, and the same document
    gives the same bytes to whoever asks: the CLI, the back office, and the
    notifications service, which asks when it sends the invoice or credit-note email
    and attaches what it gets. Refused ``not_found`` for an unknown number.
    """

    TYPE: ClassVar[str] = "ShowDocument"
    SUBJECT: ClassVar[str] = "subscriptions.cmd.show_document"

    number: InvoiceNumber = Field(
        description="The document number, e.g. INV-000001 or CN-000001.", examples=["INV-000001"]
    )
    format: DocumentFormat = Field(
        default="pdf", description="pdf, or the HTML the PDF is printed from."
    )


@register
class ShowStatement(_Command):
    """Query: a member's statement of account. Changes nothing.

    Answered with every invoice, credit note and payment of the member up to a day,
    in date order, each with the running balance; the balance (invoices less credit
    notes less payments: above zero it is owed, below it is in credit), what is
    outstanding on invoices, credit held on account, and that debt by age. With
    ``format``, also the statement as a document (the same shape as ShowDocument's
    answer). Refused ``not_found`` for an unknown member.
    """

    TYPE: ClassVar[str] = "ShowStatement"
    SUBJECT: ClassVar[str] = "subscriptions.cmd.show_statement"

    member: MemberRef = Field(description="The member's id or name.")
    on: date | None = Field(
        default=None, description="The statement as at this day (Europe/London); today if left out."
    )
    format: DocumentFormat | None = Field(
        default=None, description="Also the statement as a document: pdf or html."
    )


@register
class RecordPayment(_Command):
    """Command: record money received against an invoice.

    Part payments are allowed; a payment above the amount outstanding is
    refused (``overpayment``) saying what is outstanding; an unknown invoice is
    ``not_found``, a void one ``void``.
    """

    TYPE: ClassVar[str] = "RecordPayment"
    SUBJECT: ClassVar[str] = "subscriptions.cmd.record_payment"

    invoice: InvoiceNumber = Field(description="The invoice number.")
    amount: Money = Field(description="The amount received.")
    received_on: date = Field(description="The day it was received.")
    reference: str | None = Field(default=None, max_length=100, description="Bank reference.")


# Paying an invoice online, by card (GOV.UK Pay)

CardPaymentId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16,64}$")]


@register
class ShowPaymentDue(_Command):
    """Query: what is owed on an invoice, for the page that takes its payment online.
    Changes nothing.

    Answered with the invoice's number, who it bills, its dates, total, what was paid and
    credited, what is outstanding, whether it can be paid by card now (and if not why),
    where the card payment pages are, and how else to pay. Refused ``not_found`` for an
    unknown number or a credit note.
    """

    TYPE: ClassVar[str] = "ShowPaymentDue"
    SUBJECT: ClassVar[str] = "subscriptions.cmd.show_payment_due"

    invoice: InvoiceNumber = Field(description="The invoice number.", examples=["INV-000001"])


@register
class StartCardPayment(_Command):
    """Command: start paying what is outstanding on an invoice by card.

    The service creates a payment for the amount outstanding with its card payment
    provider (GOV.UK Pay) and answers the address of the provider's card page, where
    the person is sent. Any card payment of the invoice still in progress is cancelled
    first, so that one invoice has one live card payment; if one of them was in fact
    paid, it is recorded and the answer says so instead (``already_paid``). Nothing is
    recorded as paid until ``CheckCardPayment`` finds the payment succeeded.

    Refused ``not_found`` (no such invoice), ``nothing_due`` (void, paid or credited),
    ``too_large`` (more than a card payment takes), ``unavailable`` (card payments are
    not set up, or the provider did not answer; nothing was changed).
    """

    TYPE: ClassVar[str] = "StartCardPayment"
    SUBJECT: ClassVar[str] = "subscriptions.cmd.start_card_payment"

    invoice: InvoiceNumber = Field(description="The invoice number.", examples=["INV-000001"])
    card_payment: CardPaymentId = Field(
        description="The site's own id for this attempt, random and unguessable; it is in "
        "the return address, so that the person's return names their payment.",
        examples=["q8Xz3kVb2nLm5RtY9wPa1C"],
    )
    return_url: str = Field(
        min_length=10,
        max_length=2000,
        pattern=r"^https?://",
        description="Where the provider sends the person when their card payment ends.",
        examples=["https://vestry.example.org/pay/INV-000001/done?s=…&a=…"],
    )


@register
class CheckCardPayment(_Command):
    """Command: ask the card payment provider how a payment stands, and record it once if
    it succeeded.

    Sent by the site when the person comes back from the card page (naming the invoice and
    the site's id of the attempt) and when the provider's webhook says something happened
    (naming the provider's payment id). The status always comes from the provider's API,
    never from what the caller says. A payment that succeeded is recorded against its
    invoice exactly once, however many checks arrive and in whatever order (the store
    holds one payment per provider payment id), and ``InvoicePaid`` is published once. A
    payment that failed, was cancelled or expired records nothing.

    Answered with the outcome (``paid``, ``in_progress``, ``failed``, ``cancelled``,
    ``expired``, ``error``), whether this check recorded it, and what is left to pay.
    Refused ``not_found`` when no card payment matches, ``unavailable`` when the provider
    does not answer (nothing was changed; ask again).
    """

    TYPE: ClassVar[str] = "CheckCardPayment"
    SUBJECT: ClassVar[str] = "subscriptions.cmd.check_card_payment"

    invoice: InvoiceNumber | None = Field(
        default=None, description="The invoice the person paid (with ``card_payment``)."
    )
    card_payment: CardPaymentId | None = Field(
        default=None, description="The site's id of the attempt (with ``invoice``)."
    )
    provider_payment_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The provider's payment id, from its webhook (instead of the other two).",
        examples=["hu20sqlact5260q2nanm0q8u93"],
    )

    @model_validator(mode="after")
    def _names_one_payment(self) -> CheckCardPayment:
        by_attempt = self.invoice is not None and self.card_payment is not None
        if by_attempt == (self.provider_payment_id is not None) or (
            not by_attempt and (self.invoice or self.card_payment)
        ):
            raise ValueError(
                "name the payment either by invoice and card_payment, or by provider_payment_id"
            )
        return self


@register
class ExportBooks(_Command):
    """Query: a financial year's books as rows of an accounting package's import file, a
    page at a time. Changes nothing.

    ``records`` ``invoices``: the year's invoices and credit notes (not void), one row
    per line, in the package's sales invoice import template; a credit note's amounts
    are negative, which the package imports as a credit note. ``payments``: every
    payment against the year's invoices, one row each, in its bank statement import
    template, so each can be matched to its invoice by number. Answered with the
    template's ``columns``, the ``rows`` (text, as the file holds them), and ``next``:
    the ``after`` of the following page, none after the last. Refused ``invalid`` for an
    ``after`` that is not one this command gave.
    """

    TYPE: ClassVar[str] = "ExportBooks"
    SUBJECT: ClassVar[str] = "subscriptions.cmd.export_books"

    year: Year = Field(description="Financial year: 2026 is 1 Apr 2026 – 31 Mar 2027.")
    format: Literal["xero"] = Field(default="xero", description="The accounting package.")
    records: Literal["invoices", "payments"] = Field(
        description="Invoices and credit notes, or the payments against them."
    )
    after: str | None = Field(
        default=None, max_length=100, description="Where the previous page ended (its next)."
    )
    limit: int = Field(
        default=500, ge=1, le=1000, description="Documents (or payments) in one page."
    )


@register
class VoidInvoice(_Command):
    """Command: void an invoice nothing has been paid against. Refused otherwise."""

    TYPE: ClassVar[str] = "VoidInvoice"
    SUBJECT: ClassVar[str] = "subscriptions.cmd.void_invoice"

    invoice: InvoiceNumber = Field(description="The invoice number.")
    reason: str = Field(min_length=3, max_length=200, description="Why, for the record.")


@register
class ReissueInvoice(_Command):
    """Command: bill a member again for the year of a void yearly invoice, under a new number.

    The void invoice keeps its number in the series; the new one is billed as a run
    would bill it now (each month at its tier) and names the one it replaces.
    Answered with both numbers, or refused: ``not_found``; ``invalid`` when the
    invoice is not void or not a yearly subscription invoice, or nothing is owed;
    ``conflict`` when the member already has a live invoice for that year.
    """

    TYPE: ClassVar[str] = "ReissueInvoice"
    SUBJECT: ClassVar[str] = "subscriptions.cmd.reissue_invoice"

    invoice: InvoiceNumber = Field(description="The void invoice's number.")


# Invoicing facts


class _Fact(Message):
    KIND: ClassVar[Literal["fact"]] = "fact"
    VERSION: ClassVar[int] = 1


class DocumentLine(BaseModel):
    """One line of an invoice or credit note."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str = Field(description="What the line is for.")
    months: int = Field(description="Months covered; 0 for a one-off charge.")
    net: Money = Field(description="Net amount.")
    vat: Money = Field(description="VAT on the line, rounded half up to the penny.")


@register
class InvoiceIssued(_Fact):
    """Fact: an invoice was issued with its number.

    Sent once per invoice, in the transaction that numbers it: by an invoicing
    run, a tier change, or a chargeable booking. Not sent for dry runs, nor for
    credit notes (``CreditNoteIssued``).
    """

    TYPE: ClassVar[str] = "InvoiceIssued"
    SUBJECT: ClassVar[str] = "subscriptions.invoice.issued"

    invoice_id: str = Field(description="Id of the invoice.")
    number: str = Field(
        description="The invoice number, gapless in its series.", examples=["INV-000001"]
    )
    purpose: Literal["recurring", "tier_change", "booking"] = Field(
        description="Why it was issued."
    )
    year: int = Field(description="The financial year billed.")
    member_id: str | None = Field(description="The member billed; none for a non-member booking.")
    billed_name: Annotated[str, person_name("billing_email")] = Field(
        description="Who is billed: the organisation or the person."
    )
    billing_email: Annotated[EmailStr, PERSON_EMAIL] = Field(description="Where the invoice goes.")
    issued_on: date = Field(description="Issue date.")
    due_on: date = Field(description="Payment due date.")
    lines: list[DocumentLine] = Field(description="The invoice lines.")
    net: Money = Field(description="Total net.")
    vat: Money = Field(description="Total VAT.")
    gross: Money = Field(description="Total to pay.")
    booking_id: str | None = Field(default=None, description="The booking charged, if any.")


@register
class CreditNoteIssued(_Fact):
    """Fact: a credit note was issued against an invoice.

    Sent once per credit note: for a tier change's old months, a refunded
    leaver, or a charged booking cancelled inside its refund window.
    """

    TYPE: ClassVar[str] = "CreditNoteIssued"
    SUBJECT: ClassVar[str] = "subscriptions.credit_note.issued"

    credit_note_id: str = Field(description="Id of the credit note.")
    number: str = Field(
        description="The credit note number, gapless in its series.", examples=["CN-000001"]
    )
    credits_invoice: str | None = Field(description="Number of the invoice it credits.")
    purpose: Literal["tier_change", "leaver_refund", "booking_refund"] = Field(description="Why.")
    member_id: str | None = Field(description="The member credited, if a member.")
    billed_name: Annotated[str, person_name("billing_email")] = Field(
        description="Who is credited."
    )
    billing_email: Annotated[EmailStr, PERSON_EMAIL] = Field(
        description="Where the credit note goes."
    )
    issued_on: date = Field(description="Issue date.")
    lines: list[DocumentLine] = Field(description="The credit note lines.")
    net: Money = Field(description="Total net credited.")
    vat: Money = Field(description="Total VAT credited.")
    gross: Money = Field(description="Total credited.")


@register
class InvoicePaid(_Fact):
    """Fact: a payment was recorded against an invoice.

    Sent once per payment recorded; ``fully_paid`` says whether nothing is
    left outstanding. Not sent for a refused payment.
    """

    TYPE: ClassVar[str] = "InvoicePaid"
    SUBJECT: ClassVar[str] = "subscriptions.invoice.paid"

    invoice_id: str = Field(description="Id of the invoice.")
    number: str = Field(description="The invoice number.")
    payment_id: str = Field(description="Id of the payment.")
    amount: Money = Field(description="Amount of this payment.")
    outstanding: Money = Field(description="What is still owed after it.")
    fully_paid: bool = Field(description="True when nothing is left outstanding.")
    received_on: date = Field(description="When the money was received.")
    billing_email: Annotated[EmailStr, PERSON_EMAIL] = Field(description="The billing contact.")


@register
class InvoiceOverdue(_Fact):
    """Fact: an unpaid invoice reached a reminder stage.

    Sent by the daily sweep at most once per invoice and stage: first a day
    after the due date, second at 14 days, final at 30. Not sent for paid or
    void invoices.
    """

    TYPE: ClassVar[str] = "InvoiceOverdue"
    SUBJECT: ClassVar[str] = "subscriptions.invoice.overdue"

    invoice_id: str = Field(description="Id of the invoice.")
    number: str = Field(description="The invoice number.")
    stage: Literal["first", "second", "final"] = Field(description="Reminder stage.")
    days_overdue: int = Field(description="Days past the due date.")
    due_on: date = Field(description="The due date.")
    outstanding: Money = Field(description="What is owed.")
    billed_name: Annotated[str, person_name("billing_email")] = Field(description="Who owes it.")
    billing_email: Annotated[EmailStr, PERSON_EMAIL] = Field(description="Where the reminder goes.")


@register
class InvoiceVoided(_Fact):
    """Fact: an invoice was voided. Sent once, when it is; never for a paid invoice."""

    TYPE: ClassVar[str] = "InvoiceVoided"
    SUBJECT: ClassVar[str] = "subscriptions.invoice.voided"

    invoice_id: str = Field(description="Id of the invoice.")
    number: str = Field(description="The invoice number.")
    reason: str = Field(description="Why it was voided.")


@register
class InvoiceRunCompleted(_Fact):
    """Fact: an invoicing run finished.

    Sent once per run that completes, with its counts; not for dry runs, nor
    for a run that was interrupted (the run that resumes it sends its own).
    """

    TYPE: ClassVar[str] = "InvoiceRunCompleted"
    SUBJECT: ClassVar[str] = "subscriptions.invoice_run.completed"

    run_id: str = Field(description="Id of the run.")
    year: int = Field(description="Financial year billed.")
    issued: int = Field(description="Invoices this run issued.")
    already_billed: int = Field(description="Memberships billed for the year before it.")
    net: Money = Field(description="Net total of the invoices it issued.")
    gross: Money = Field(description="Gross total of the invoices it issued.")
    started_at: AwareDatetime = Field(description="When it started, UTC.")
    finished_at: AwareDatetime = Field(description="When it finished, UTC.")
