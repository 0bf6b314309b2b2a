"""Commands over request/reply: a bad one gets a structured error and changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from nats.aio.client import Client

from contracts.subscriptions_v1 import JoinMember
from kernel.commands import ServiceUnavailable, request, request_raw
from kernel.outbox import unsent_count
from kernel.settings import Settings
from services.subscriptions import store
from tests.conftest import eventually
from tests.stack import join, stack


def raw_join(data: dict[str, object], type_: str = "JoinMember") -> bytes:
    envelope = {
        "id": "cmd-1",
        "type": type_,
        "version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "correlation_id": "cmd-1",
        "causation_id": None,
        "data": data,
    }
    return json.dumps(envelope).encode()


GOOD = {
    "name": "Bolton Council",
    "tier": "district",
    "billing_email": "ap@bolton.gov.uk",
    "joined_on": "2026-04-01",
}


@pytest.mark.parametrize(
    ("payload", "code", "field", "words"),
    [
        (raw_join({**GOOD, "billing_email": "not-an-email"}), "invalid", "billing_email", "email"),
        (raw_join({**GOOD, "tier": "platinum"}), "invalid", "tier", "unknown tier 'platinum'"),
        (
            raw_join({k: v for k, v in GOOD.items() if k != "name"}),
            "invalid",
            "name",
            "Field required",
        ),
        (raw_join({**GOOD, "joined_on": "1st April"}), "invalid", "joined_on", "date"),
        (raw_join({**GOOD, "discount": 50}), "invalid", "discount", "Extra inputs"),
        (raw_join({**GOOD, "name": "bolton   COUNCIL"}), "conflict", "name", "already a member"),
        (raw_join(GOOD, type_="LeaveMember"), "unsupported", None, "takes JoinMember v1"),
        (b"join bolton please", "invalid", None, "JSON"),
    ],
)
async def test_invalid_join_is_refused_with_a_structured_error_and_changes_nothing(
    settings: Settings, nc: Client, payload: bytes, code: str, field: str | None, words: str
) -> None:
    async with stack(settings) as (subscriptions, _, _n):
        await request(nc, JoinMember.model_validate(GOOD))
        js = nc.jetstream()
        await eventually(lambda: _stored_is(js, 1))

        reply = await request_raw(nc, JoinMember.SUBJECT, payload)

        assert not reply.ok and reply.error is not None
        assert (reply.error.code, reply.error.field) == (code, field)
        assert words in reply.error.message
        async with subscriptions.sessions() as session:
            assert await store.count_members(session) == 1
            assert await unsent_count(session) == 0
        assert await _stored_is(js, 1)


async def test_command_to_a_stopped_service_says_so(nc: Client) -> None:
    with pytest.raises(ServiceUnavailable, match="is the subscriptions service running"):
        await join(nc, 1)


async def _stored_is(js, expected: int) -> bool:  # type: ignore[no-untyped-def]
    return (await js.stream_info("SUBSCRIPTIONS")).state.messages == expected
