"""The contracts: envelopes, the registry, and committed schema snapshots."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import ClassVar, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import Field, ValidationError

from contracts import REGISTRY, Envelope, Message, Registry
from contracts.envelope import derived_message_id, new_message_id
from contracts.export import SNAPSHOT_DIR, drift, write
from contracts.subscriptions_v1 import JoinMember, MembershipStarted
from kernel.streams import stream_for_subject


def test_committed_schema_snapshots_match_the_registered_messages() -> None:
    assert drift() == []


def test_a_changed_schema_without_a_version_bump_is_caught(tmp_path: Path) -> None:
    shutil.copytree(SNAPSHOT_DIR, tmp_path, dirs_exist_ok=True)
    registry = Registry()
    for spec in REGISTRY.all():
        if spec.model is not MembershipStarted:
            registry.register(spec.model)

    class MembershipStartedWithRegion(Message):
        """Fact: a membership began (now with a region)."""

        TYPE: ClassVar[str] = "MembershipStarted"
        VERSION: ClassVar[int] = 1
        SUBJECT: ClassVar[str] = "subscriptions.membership.started"
        KIND: ClassVar[Literal["fact"]] = "fact"
        membership_id: str = Field(description="Id of the membership.")
        region: str = Field(description="Region.")

    registry.register(MembershipStartedWithRegion)
    problems = drift(tmp_path, registry)
    assert any(
        p.startswith("MembershipStarted.v1.json: the schema changed without a version bump")
        for p in problems
    )


def test_a_new_version_needs_its_own_snapshot(tmp_path: Path) -> None:
    write(tmp_path)
    registry = Registry()
    for spec in REGISTRY.all():
        registry.register(spec.model)

    class MembershipStartedV2(Message):
        """Fact: a membership began, v2."""

        TYPE: ClassVar[str] = "MembershipStarted"
        VERSION: ClassVar[int] = 2
        SUBJECT: ClassVar[str] = "subscriptions.membership.started"
        KIND: ClassVar[Literal["fact"]] = "fact"
        membership_id: str

    registry.register(MembershipStartedV2)
    problems = drift(tmp_path, registry)
    assert any(p.startswith("MembershipStarted.v2.json: no committed snapshot") for p in problems)


def test_every_fact_has_a_stream_and_no_command_is_captured_by_one() -> None:
    for spec in REGISTRY.all():
        if spec.kind == "fact":
            assert stream_for_subject(spec.subject).name == spec.owner.upper()
        else:
            with pytest.raises(LookupError):
                stream_for_subject(spec.subject)


def test_every_message_says_when_it_is_sent_and_describes_its_fields() -> None:
    for spec in REGISTRY.all():
        assert spec.model.__doc__ and len(spec.model.__doc__.strip()) > 20, spec.key
        for name, field in spec.model.model_fields.items():
            assert field.description, f"{spec.key}.{name} has no description"


def test_registry_refuses_a_fact_on_a_command_subject() -> None:
    class Wrong(Message):
        """Fact on the wrong subject."""

        TYPE: ClassVar[str] = "Wrong"
        VERSION: ClassVar[int] = 1
        SUBJECT: ClassVar[str] = "subscriptions.cmd.wrong"
        KIND: ClassVar[Literal["fact"]] = "fact"

    with pytest.raises(ValueError, match="command subject"):
        Registry().register(Wrong)


def test_envelope_keeps_instants_in_utc_and_refuses_naive_ones() -> None:
    london_summer = timezone(timedelta(hours=1))
    envelope = Envelope.wrap(_join(), occurred_at=datetime(2026, 6, 1, 10, 0, tzinfo=london_summer))
    assert envelope.occurred_at == datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    assert envelope.occurred_at.tzinfo == UTC
    with pytest.raises(ValidationError):
        Envelope.model_validate({**envelope.model_dump(), "occurred_at": "2026-06-01T10:00:00"})


def test_caused_message_inherits_correlation() -> None:
    cause = Envelope.wrap(_join())
    effect = Envelope.wrap(_join(), causation=cause)
    assert effect.correlation_id == cause.correlation_id == cause.id
    assert effect.causation_id == cause.id


def test_messages_are_frozen_and_strict() -> None:
    join = _join()
    with pytest.raises(ValidationError):
        join.name = "Other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs"):
        JoinMember.model_validate({**join.model_dump(), "discount": 10})


def test_derived_ids_are_stable() -> None:
    assert derived_message_id("invoice", "2026", "m-1") == derived_message_id(
        "invoice", "2026", "m-1"
    )
    assert derived_message_id("invoice", "2026", "m-1") != derived_message_id(
        "invoice", "2027", "m-1"
    )


@given(st.lists(st.text(), min_size=1, max_size=4))
def test_derived_ids_are_the_uuid5_they_always_were(parts: list[str]) -> None:
    """Ids already in streams and stores were made with ``uuid.uuid5``: a retry after an
    upgrade must recreate the same id."""
    namespace = uuid.UUID("6f1c2f0e-7a52-4bb4-9d1f-3f8f5a3f2c10")
    assert derived_message_id(*parts) == str(uuid.uuid5(namespace, "/".join(parts)))


def test_new_ids_are_random_version_4_uuids_in_canonical_text() -> None:
    ids = {new_message_id() for _ in range(1000)}
    assert len(ids) == 1000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def _join() -> JoinMember:
    return JoinMember(
        name="Bury Council",
        tier="upper-tier",
        billing_email="ap@bury.example.gov.uk",
        joined_on="2026-04-01",
    )  # type: ignore[arg-type]
