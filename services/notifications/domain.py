"""Who hears what, by which channel, and when: rules free of I/O.

Transactional messages (an invoice, a booking) go by email to the person the
fact names, and also by SMS when that person has consented to SMS and given a
mobile number. Broadcasts go only to contacts subscribed to their topic, on
each channel they have consented to. Non-urgent SMS wait out quiet hours.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers

from contracts.money import Money
from contracts.notifications_v1 import TOPICS as contract_topics
from contracts.personal import normalised_email
from contracts.subscriptions_v1 import MembershipStarted
from kernel import links

LONDON = ZoneInfo("Europe/London")
CHANNELS = ("email", "sms")

# The topics a contact can follow are part of the contract: the site names them too.
TOPICS = contract_topics


class InvalidPhone(ValueError):
    """Raised when a mobile number cannot be read as a valid number."""


class UnknownTopic(LookupError):
    """Raised when a topic is not one of the partnership's topics."""


def normalise_mobile(text: str, region: str = "GB") -> str:
    """``text`` as an E.164 number (``+447700900123``); UK numbers may leave out +44."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as error:
        raise InvalidPhone(f"{text!r} is not a phone number: {error}") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(f"{text!r} is not a valid phone number")
    kind = phonenumbers.number_type(number)
    if kind not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        raise InvalidPhone(f"{text!r} is not a mobile number: SMS needs one")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def check_topic(topic: str) -> str:
    if topic not in TOPICS:
        raise UnknownTopic(f"there is no topic {topic!r}; the topics are {', '.join(TOPICS)}")
    return topic


@dataclass(frozen=True)
class Reachable:
    """What the rules need to know of a contact: where, and what they agreed to."""

    contact_id: str | None
    email: str | None
    mobile: str | None = None
    email_consent: bool = True
    sms_consent: bool = False
    topics: frozenset[str] = frozenset()
    name: str | None = None


@dataclass(frozen=True)
class PlannedDelivery:
    """One message to one recipient on one channel, for one cause."""

    recipient: str
    channel: str
    template: str
    context: dict[str, Any]
    urgent: bool = False
    contact_id: str | None = None


# Given a template and its context, the context its SMS fits the segment limit with
# (its free text shortened as need be), or None when no shortening makes it fit.
SmsFit = Callable[[str, dict[str, Any]], dict[str, Any] | None]


def transactional(
    person: Reachable,
    template: str,
    context: dict[str, Any],
    *,
    sms_template: bool = True,
    fit_sms: SmsFit | None = None,
) -> list[PlannedDelivery]:
    """Email to the person; SMS as well where they consented and gave a mobile.

    With ``fit_sms`` the SMS is planned with the context it fits the segment limit
    with (the email keeps the full one), and not at all if it cannot fit.
    """
    planned = []
    if person.email:
        planned.append(
            PlannedDelivery(person.email, "email", template, context, contact_id=person.contact_id)
        )
    if sms_template and person.sms_consent and person.mobile:
        sms_context = context if fit_sms is None else fit_sms(template, context)
        if sms_context is not None:
            planned.append(
                PlannedDelivery(
                    person.mobile, "sms", template, sms_context, contact_id=person.contact_id
                )
            )
    return planned


def welcome(fact: MembershipStarted) -> PlannedDelivery:
    """A new member's billing contact is welcomed by email."""
    return PlannedDelivery(
        recipient=str(fact.billing_email),
        channel="email",
        template="welcome",
        context={
            "member_name": fact.member_name,
            "tier": fact.tier,
            "starts_on": fact.starts_on.isoformat(),
        },
    )


@dataclass
class FanOut:
    """A broadcast's recipients, and whom it skipped for want of consent on a channel.

    ``shared`` is what every recipient's message is rendered from (the operator's
    data, the topic): stored once with the broadcast. Each planned delivery carries
    only what is its recipient's own (their name, their unsubscribe link).
    """

    planned: list[PlannedDelivery] = field(default_factory=list)
    skipped_for_consent: int = 0
    recipients: int = 0
    shared: dict[str, Any] = field(default_factory=dict)


def fan_out(
    contacts: Iterable[Reachable],
    *,
    topic: str,
    channels: Sequence[str],
    template: str,
    data: dict[str, Any],
    urgent: bool,
    unsubscribe: Callable[[str], str] | None = None,
) -> FanOut:
    """One delivery per subscriber of ``topic`` and channel they consented to, each once."""
    result = FanOut(shared={**data, "topic": topic})
    seen: set[tuple[str, str]] = set()
    for contact in contacts:
        if topic not in contact.topics:
            continue
        result.recipients += 1
        for channel in channels:
            address = contact.email if channel == "email" else contact.mobile
            consented = contact.email_consent if channel == "email" else contact.sms_consent
            if not consented or not address:
                result.skipped_for_consent += 1
                continue
            if (channel, address) in seen:  # two contacts sharing an address hear it once
                continue
            seen.add((channel, address))
            context = {"recipient_name": contact.name or ""}
            if unsubscribe is not None and contact.contact_id:
                context["unsubscribe_url"] = unsubscribe(contact.contact_id)
            result.planned.append(
                PlannedDelivery(address, channel, template, context, urgent, contact.contact_id)
            )
    return result


def broadcast_context(shared: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """What one recipient's broadcast is rendered from: the broadcast's, then their own."""
    return {**shared, **own}


# When


# The default delays before each retry of a transiently failed delivery (the
# setting ``delivery_retry_s`` overrides them): a mail server's greylisting or
# a gateway's outage is usually over within the hour.
RETRY_DELAYS_S = (30.0, 120.0, 600.0, 1800.0)
MAX_ATTEMPTS = len(RETRY_DELAYS_S) + 1


def retry_delay(attempts: int, delays: Sequence[float] = RETRY_DELAYS_S) -> float | None:
    """Seconds before the next attempt after ``attempts`` failed ones, or None to give up."""
    if attempts > len(delays):
        return None
    return delays[max(attempts, 1) - 1]


@dataclass(frozen=True)
class QuietHours:
    """A nightly window (Europe/London) when non-urgent SMS wait; it may span midnight."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str | None) -> QuietHours | None:
        """``"21:00-08:00"``, or None for an empty setting."""
        if not text or not text.strip():
            return None
        try:
            start, end = (time.fromisoformat(part.strip()) for part in text.split("-"))
        except ValueError:
            raise ValueError(f"quiet hours {text!r} are not HH:MM-HH:MM") from None
        return cls(start, end)

    def wait_until(self, now: datetime) -> datetime | None:
        """When a non-urgent SMS due at ``now`` may go, or None if it may go now."""
        local = now.astimezone(LONDON)
        clock = local.time()
        if self.start == self.end:
            return None
        if self.start < self.end:
            quiet = self.start <= clock < self.end
            end_day = local.date()
        else:  # spans midnight
            quiet = clock >= self.start or clock < self.end
            end_day = local.date() + timedelta(days=1) if clock >= self.start else local.date()
        if not quiet:
            return None
        return datetime.combine(end_day, self.end, tzinfo=LONDON)


# Unsubscribe links (RFC 8058 one-click): signed in kernel.links, answered by the web service.

unsubscribe_url = links.unsubscribe_url
unsubscribe_link_is_genuine = links.unsubscribe_link_is_genuine


# Forgetting a person (the right to erasure)

FORGOTTEN_PREFIX = "forgotten:"
NEVER_SENT = "the contact was forgotten before it was sent"
ADDRESS_REMOVED = "(address removed)"


def forgotten_digest(address: str, key: str) -> str:
    """What is kept of a forgotten address, so that nothing is planned for it again.

    An HMAC-SHA256 under ``key``, a secret only this service holds: a plain hash
    would let anyone with a list of addresses tell who had been here and match
    them to their deliveries. Matched as every service matches an address
    (trimmed, lower case); a phone number likewise.
    """
    address = address.strip().lower()
    return hmac.new(key.encode(), b"forgotten:" + address.encode(), hashlib.sha256).hexdigest()


def forgotten_recipient(digest: str) -> str:
    """What a forgotten person's ledger rows name in place of their address: unique per
    address (a cause still has one row per recipient and channel), readable by nobody."""
    return FORGOTTEN_PREFIX + digest[:40]


def is_forgotten_recipient(recipient: str) -> bool:
    return recipient.startswith(FORGOTTEN_PREFIX)


@dataclass(frozen=True)
class PersonAsked:
    """Whom an erasure or an export is about, as this service matches them.

    Their email, in any case, and the phone the request gives, as given and in
    E.164 (as contacts, the directory and SMS rows hold it). A contact or directory
    entry with either is theirs (as a booking with their phone is theirs in the
    events service, whatever its email). Their addresses are those emails and
    phones and the mobile on each record of theirs; a ledger row to any of them
    is theirs, and such a mobile on someone else's record (a shared duty phone)
    is theirs too, though the record is not.
    """

    email: str
    phones: frozenset[str] = frozenset()


def person_asked(email: str, phone: str | None = None) -> PersonAsked:
    return PersonAsked(normalised_email(email), frozenset(phone_forms(phone)))


def phone_forms(phone: str | None) -> set[str]:
    """The forms a phone number is matched in: as given, and in E.164 where it reads as
    a mobile. A number that is no mobile still matches as given: no reason to refuse."""
    if not phone or not phone.strip():
        return set()
    forms = {phone.strip()}
    with contextlib.suppress(InvalidPhone):
        forms.add(normalise_mobile(phone))
    return forms


def without_addresses(text: str | None, addresses: Iterable[str]) -> str | None:
    """``text`` with each of ``addresses`` taken out, whatever its case: a mail server
    names the recipient it refused in its reply, which the ledger keeps as the error."""
    if not text:
        return text
    for address in sorted(set(addresses), key=len, reverse=True):
        if address:
            text = re.sub(re.escape(address), ADDRESS_REMOVED, text, flags=re.IGNORECASE)
    return text


def forgotten_delivery(
    *, still_open: bool, last_error: str | None, addresses: Iterable[str], marker: str
) -> dict[str, Any]:
    """What a ledger row to a forgotten person becomes.

    It keeps its cause, channel, template, status, attempts and dates, so nothing
    is sent twice and a broadcast's counts stay right; it loses whom it went to,
    what it said (the rendered context: names, references, links) and their
    contact id. A row not sent yet never will be: there is no one to send it to.
    """
    changes: dict[str, Any] = {
        "recipient": marker,
        "context": "{}",
        "contact_id": None,
        "last_error": without_addresses(last_error, addresses),
    }
    if still_open:
        changes.update(status="failed", last_error=NEVER_SENT, claim=None)
    return changes


# How people see times, days and money


def when(instant: datetime) -> str:
    """An instant as people in the UK read it: ``Tue 9 Jun 2026, 10:00``."""
    local = instant.astimezone(LONDON)
    return f"{local:%a} {local.day} {local:%b %Y, %H:%M}"


def day(value: date) -> str:
    return f"{value.day} {value:%b %Y}"


def pounds(money: Money) -> str:
    sign = "-" if money.amount_minor < 0 else ""
    return f"{sign}£{abs(money.amount_minor) / 100:,.2f}"
