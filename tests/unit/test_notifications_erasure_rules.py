"""The notifications service's rules for forgetting a person and for broadcasts: what
is kept of a forgotten address, what their ledger rows keep, whom a request names,
what a failed delivery's fact may say, and a broadcast's text held once for all its
recipients."""

from __future__ import annotations

import hashlib

from contracts.notifications_v1 import DeliveryFailed
from services.notifications import domain, store
from services.notifications.domain import Reachable
from services.notifications.sender import Attempt, _outcome

ANN = "ann.ahmed@bury.example.gov.uk"


def test_a_forgotten_address_is_kept_as_a_keyed_digest_no_list_of_addresses_can_match() -> None:
    digest = domain.forgotten_digest(ANN, "key-one")

    assert digest != hashlib.sha256(ANN.encode()).hexdigest()
    assert digest != domain.forgotten_digest(ANN, "key-two")
    assert ANN not in digest and "ann" not in digest
    # Matched as every service matches an address: the same person in any case.
    assert domain.forgotten_digest(f"  {ANN.upper()} ", "key-one") == digest


def test_a_forgotten_persons_rows_name_a_stand_in_unique_to_each_address() -> None:
    email = domain.forgotten_recipient(domain.forgotten_digest(ANN, "k"))
    mobile = domain.forgotten_recipient(domain.forgotten_digest("+447400100001", "k"))

    assert domain.is_forgotten_recipient(email) and domain.is_forgotten_recipient(mobile)
    assert email != mobile
    assert not domain.is_forgotten_recipient(ANN)


def test_a_sent_row_keeps_its_outcome_but_not_whom_it_went_to_or_what_it_said() -> None:
    changes = domain.forgotten_delivery(
        still_open=False,
        last_error=f"SMTPRecipientsRefused: {{'{ANN.upper()}': (550, 'no such user')}}",
        addresses=[ANN, "+447400100001"],
        marker="forgotten:abc",
    )

    assert changes["recipient"] == "forgotten:abc"
    assert changes["context"] == "{}"
    assert changes["contact_id"] is None
    assert "status" not in changes  # sent stays sent, failed stays failed
    assert "ann" not in changes["last_error"].lower()
    assert "550" in changes["last_error"]


def test_a_row_not_yet_sent_is_failed_so_it_never_goes() -> None:
    changes = domain.forgotten_delivery(
        still_open=True, last_error=None, addresses=[ANN], marker="forgotten:abc"
    )

    assert changes["status"] == "failed"
    assert changes["last_error"] == domain.NEVER_SENT
    assert changes["claim"] is None


def test_an_error_naming_no_address_of_theirs_is_kept_as_it_was() -> None:
    error = "SMTPServerDisconnected: Connection lost"
    assert domain.without_addresses(error, [ANN]) == error
    assert domain.without_addresses(None, [ANN]) is None


def test_a_request_names_the_person_by_email_in_any_case_and_phone_in_any_form() -> None:
    asked = domain.person_asked(f" {ANN.title()} ", "07400 100001")

    assert asked.email == ANN
    assert asked.phones == {"07400 100001", "+447400100001"}
    assert domain.person_asked(ANN).phones == frozenset()
    assert domain.person_asked(ANN, "not a phone").phones == {"not a phone"}


def _subscriber(n: int) -> Reachable:
    return Reachable(
        contact_id=f"c{n}",
        email=f"p{n}@example.gov.uk",
        name=f"Person {n}",
        topics=frozenset({"warp"}),
    )


def test_a_broadcast_holds_its_text_once_and_each_recipient_only_their_own() -> None:
    body = "A long advisory. " * 1000
    fan = domain.fan_out(
        [_subscriber(n) for n in range(3)],
        topic="warp",
        channels=["email"],
        template="broadcast",
        data={"headline": "Patch now", "body": body},
        urgent=False,
        unsubscribe=lambda contact_id: f"https://u/{contact_id}",
    )

    assert fan.shared == {"headline": "Patch now", "body": body, "topic": "warp"}
    assert all("body" not in planned.context for planned in fan.planned)
    first = domain.broadcast_context(fan.shared, fan.planned[0].context)
    assert first == {
        "headline": "Patch now",
        "body": body,
        "topic": "warp",
        "recipient_name": "Person 0",
        "unsubscribe_url": "https://u/c0",
    }


def test_a_failed_delivery_fact_does_not_name_the_address_the_server_refused() -> None:
    row = store.Delivery(
        id="d-1",
        cause_id="c-1",
        recipient=ANN,
        channel="email",
        template="welcome",
        context="{}",
        attempts=0,
        attempts_before_resend=0,
    )
    refusal = f"SMTPRecipientsRefused: {{'{ANN}': (550, '5.1.1 <{ANN.upper()}> unknown')}}"

    fact = _outcome(row, Attempt("permanent", refusal), [])

    assert isinstance(fact, DeliveryFailed)
    assert "ann" not in fact.error.lower() and "550" in fact.error
    assert row.last_error == refusal  # the ledger keeps it, until she is forgotten
