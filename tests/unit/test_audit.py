"""Who an audit record names: the staff member on the envelope, else the NATS user whose
inbox the request's reply subject is (kernel/audit.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contracts import REGISTRY, Envelope
from contracts.audit_v1 import ACTIONS, DEVELOPMENT, ActionRecorded
from contracts.envelope import Actor
from kernel import audit
from kernel.settings import inbox_prefix


@pytest.mark.parametrize(
    ("reply", "user"),
    [
        ("_INBOX_operator.AbCd0123.1", "operator"),
        ("_INBOX_web.x", "web"),
        ("_INBOX.AbCd0123.7", DEVELOPMENT),  # vestry dev: no users, nats-py's own prefix
        (None, "unknown"),  # asked for no answer
        ("", "unknown"),
    ],
)
def test_the_reply_subject_names_the_only_user_who_can_read_the_answer(
    reply: str | None, user: str
) -> None:
    assert audit.nats_user_of_reply(reply) == user


def test_the_cli_is_the_user_of_its_url_or_development() -> None:
    url = "nats://operator:secret@127.0.0.1:4222,nats://operator:secret@127.0.0.1:4223"
    assert inbox_prefix(url) == "_INBOX_operator"
    assert audit.nats_user_of_url(url) == "operator"
    assert audit.nats_user_of_url("nats://127.0.0.1:4222") == DEVELOPMENT


def test_a_staff_member_on_the_envelope_is_named_and_the_door_they_came_through_kept() -> None:
    fiona = Actor(id="s-1", name="Fiona Finance", address="192.0.2.7")
    by = audit.performer(fiona, "_INBOX_web.x.1")
    assert (by.kind, by.name, by.staff_id, by.address, by.nats_user) == (
        "staff",
        "Fiona Finance",
        "s-1",
        "192.0.2.7",
        "web",
    )
    plain = audit.performer(None, "_INBOX_operator.x.1")
    assert (plain.kind, plain.name, plain.staff_id, plain.nats_user) == (
        "nats_user",
        "operator",
        None,
        "operator",
    )


def test_a_record_is_a_registered_fact_on_the_ops_stream_with_an_id_fixed_by_its_request() -> None:
    record = audit.action_recorded(
        "record_payment",
        service="subscriptions",
        by=audit.performer(None, "_INBOX.x"),
        target="INV-1",
        filters={"received_on": "2026-05-03"},
        result={"status": "paid"},
        request_id="r-1",
    )
    envelope = Envelope.wrap(record, id=audit.record_id("subscriptions", "record_payment", "r-1"))
    assert REGISTRY.decode(Envelope.from_bytes(envelope.to_bytes())) == record
    assert REGISTRY.spec_for(ActionRecorded).owner.upper() == "OPS"
    assert audit.record_id("subscriptions", "record_payment", "r-1") == envelope.id
    assert audit.record_id("subscriptions", "record_payment", "r-2") != envelope.id
    assert "record_payment" in ACTIONS and "forget" in ACTIONS
    with pytest.raises(ValidationError):
        ActionRecorded.model_validate({**record.model_dump(), "action": "Drop Table"})


def test_a_bare_request_names_its_staff_member_in_a_header_or_nobody() -> None:
    fiona = Actor(id="s-1", name="Fiona Finance", address="192.0.2.7")
    assert audit.actor_in({audit.ACTOR_HEADER: fiona.model_dump_json()}) == fiona
    assert audit.actor_in({}) is None
    assert audit.actor_in({audit.ACTOR_HEADER: '{"name": 1}'}) is None
