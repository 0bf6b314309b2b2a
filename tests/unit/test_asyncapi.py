"""The committed AsyncAPI document: what export.py makes now, and what the official
parser (@asyncapi/parser, tests/validators) accepts and reads from it."""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

import pytest
from pydantic import BaseModel, Field

from contracts import REGISTRY, Message, Registry
from contracts.audit_v1 import ActionRecorded
from contracts.envelope import Envelope
from contracts.export import ASYNCAPI_FILE, SNAPSHOT_DIR, asyncapi_document
from contracts.system_v1 import SERVICES
from tests.node import run_node

COMMITTED = SNAPSHOT_DIR / ASYNCAPI_FILE
SYSTEM_CHANNELS = {"reply": None, "dlq": "dlq.{service}.{subject}"}

# Parses the document on stdin; prints the diagnostics and what the parsed model says.
PARSE = r"""
const { Parser } = require('@asyncapi/parser');
let text = '';
process.stdin.on('data', (chunk) => { text += chunk; });
process.stdin.on('end', async () => {
  const { document, diagnostics } = await new Parser().parse(text);
  const out = {
    diagnostics: diagnostics.map((d) => ({
      severity: d.severity, code: d.code, message: d.message, path: d.path.join('/'),
    })),
  };
  if (document) {
    const keys = (schema) => (schema && schema.properties() ? Object.keys(schema.properties()) : null);
    out.channels = Object.fromEntries(document.channels().all().map((c) => [c.id(), c.address()]));
    out.servers = document.servers().all().map((s) => ({
      id: s.id(), protocol: s.protocol(), host: s.host(), description: s.description(),
    }));
    out.operations = Object.fromEntries(document.operations().all().map((op) => {
      const reply = op.reply();
      return [op.id(), {
        action: op.action(),
        channels: op.channels().all().map((c) => c.id()),
        messages: op.messages().all().map((m) => m.id()),
        reply: reply ? {
          channel: reply.channel() ? reply.channel().id() : null,
          address: reply.channel() ? reply.channel().address() : null,
          messages: reply.messages().all().map((m) => m.id()),
        } : null,
      }];
    }));
    out.messages = Object.fromEntries(document.components().messages().all().map((m) => {
      const payload = m.payload();
      const data = payload && payload.properties() ? payload.properties().data : undefined;
      return [m.id(), {
        payload: keys(payload),
        data: data ? keys(data) : null,
        headers: keys(m.headers()),
      }];
    }));
  }
  console.log(JSON.stringify(out));
});
"""


@pytest.fixture(scope="module")
def parsed() -> dict[str, Any]:
    return json.loads(run_node(PARSE, COMMITTED.read_text()))


def test_the_committed_document_is_what_export_makes_now() -> None:
    committed = json.loads(COMMITTED.read_text())
    assert committed == json.loads(json.dumps(asyncapi_document())), (
        "re-export: .venv/bin/vestry contracts export contracts/schemas"
    )


def test_the_official_parser_finds_no_error_and_no_warning(parsed: dict[str, Any]) -> None:
    serious = [d for d in parsed["diagnostics"] if d["severity"] in (0, 1)]
    assert serious == []
    assert "channels" in parsed, "the parser gave back no document"


def test_a_channel_per_registered_message_and_the_reply_and_dlq_channels(
    parsed: dict[str, Any],
) -> None:
    specs = REGISTRY.all()
    assert len(parsed["channels"]) == len(specs) + len(SYSTEM_CHANNELS)
    for channel, address in SYSTEM_CHANNELS.items():
        assert parsed["channels"][channel] == address
    assert sorted(a for a in parsed["channels"].values() if a and "{" not in a) == sorted(
        spec.subject for spec in specs
    )


def test_facts_are_sent_by_their_owner_and_commands_received_with_a_reply(
    parsed: dict[str, Any],
) -> None:
    operations = parsed["operations"]
    for spec in REGISTRY.all():
        [(op_id, operation)] = [
            (op_id, op) for op_id, op in operations.items() if op["messages"] == [spec.key]
        ]
        assert op_id.startswith(f"{spec.owner}_")
        assert parsed["channels"][operation["channels"][0]] == spec.subject
        if spec.kind == "fact":
            assert operation["action"] == "send"
            assert operation["reply"] is None
        else:
            assert operation["action"] == "receive"
            assert operation["reply"] == {
                "channel": "reply",
                "address": None,
                "messages": ["Reply"],
            }
    for service in SERVICES:
        assert operations[f"{service}_dead_letter"]["channels"] == ["dlq"]
    # The audit is a fact like any other, on its own subject in the OPS stream.
    audit = operations[f"ops_send_ops_action_recorded_v{ActionRecorded.VERSION}"]
    assert parsed["channels"][audit["channels"][0]] == ActionRecorded.SUBJECT


def test_every_message_is_an_envelope_whose_data_is_its_schema(parsed: dict[str, Any]) -> None:
    envelope_fields = sorted(Envelope.model_fields)
    for spec in REGISTRY.all():
        message = parsed["messages"][spec.key]
        assert sorted(message["payload"]) == envelope_fields, spec.key
        assert sorted(message["data"] or []) == sorted(spec.json_schema()["properties"]), spec.key
        assert message["headers"] == (["Nats-Msg-Id"] if spec.kind == "fact" else None), spec.key


def test_the_reply_dead_letter_and_audit_record_say_what_they_carry(
    parsed: dict[str, Any],
) -> None:
    messages = parsed["messages"]
    assert sorted(messages["Reply"]["payload"]) == [
        "correlation_id",
        "data",
        "error",
        "ok",
        "request_id",
    ]
    assert "OpsRecord" not in messages  # the CLI's bare JSON of old: now a contract
    assert {"action", "by", "service", "target", "filters", "result", "dry_run"} <= set(
        messages[f"ActionRecorded.v{ActionRecorded.VERSION}"]["data"]
    )
    assert {
        "Vestry-Original-Subject",
        "Vestry-Service",
        "Vestry-Error-Kind",
        "Vestry-Error",
    } <= set(messages["DeadLetter"]["headers"])
    document = json.loads(COMMITTED.read_text())
    error = document["components"]["schemas"]["Reply"]["properties"]["error"]
    assert error["anyOf"][0] == {"$ref": "#/components/schemas/CommandError"}
    assert sorted(document["components"]["schemas"]["CommandError"]["properties"]) == [
        "code",
        "field",
        "message",
    ]


def test_the_nats_server_is_described(parsed: dict[str, Any]) -> None:
    [server] = parsed["servers"]
    assert (server["protocol"], server["host"]) == ("nats", "localhost:4222")
    assert "three-node" in server["description"]


def test_every_ref_points_inside_the_document() -> None:
    document = json.loads(COMMITTED.read_text())
    refs = _refs(document)
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = document
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
            node = node[part]


def test_defs_of_one_name_are_shared_when_equal_and_told_apart_when_not() -> None:
    registry = Registry()
    registry.register(_fact("One", "a", _place_with_name()))
    registry.register(_fact("Two", "b", _place_with_name()))
    registry.register(_fact("Three", "c", _place_with_postcode()))
    found = asyncapi_document(registry)["components"]["schemas"]
    assert "Place" not in found
    assert sorted(name for name in found if name.endswith("Place")) == [
        "One.v1.Place",
        "Three.v1.Place",
    ]
    assert found["Two.v1"]["properties"]["place"]["$ref"] == "#/components/schemas/One.v1.Place"
    assert "postcode" in found["Three.v1.Place"]["properties"]

    alone = Registry()
    alone.register(_fact("One", "a", _place_with_name()))
    alone.register(_fact("Two", "b", _place_with_name()))
    found = asyncapi_document(alone)["components"]["schemas"]
    assert [name for name in found if name.endswith("Place")] == ["Place"]
    assert found["One.v1"]["properties"]["place"]["$ref"] == "#/components/schemas/Place"


def _place_with_name() -> type[BaseModel]:
    class Place(BaseModel):
        name: str

    return Place


def _place_with_postcode() -> type[BaseModel]:
    class Place(BaseModel):
        postcode: str

    return Place


def _fact(type_: str, entity: str, place: type[BaseModel]) -> type[Message]:
    model: type[Message] = type(
        type_,
        (Message,),
        {
            "__doc__": f"Fact: {type_} happened.",
            "__annotations__": {
                "TYPE": ClassVar[str],
                "VERSION": ClassVar[int],
                "SUBJECT": ClassVar[str],
                "KIND": ClassVar[Literal["fact"]],
                "place": place,
            },
            "TYPE": type_,
            "VERSION": 1,
            "SUBJECT": f"subscriptions.{entity}.happened",
            "KIND": "fact",
            "place": Field(description="Where."),
        },
    )
    return model


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []
