"""JSON Schemas of every message and the AsyncAPI document describing the subjects."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from contracts.envelope import Envelope
from contracts.registry import REGISTRY, MessageSpec, Registry
from contracts.system_v1 import SERVICES, Reply

SNAPSHOT_DIR = Path(__file__).parent / "schemas"
ASYNCAPI_FILE = "asyncapi.json"

_DEFS = "#/$defs/"
_SCHEMAS = "#/components/schemas/"
_NATS_BINDING = "0.1.0"

# Why a message is dead-lettered: kernel.deadletter.Failure.kind.
FAILURE_KINDS = ("malformed", "unsupported", "invalid", "handler", "undeliverable")


def schemas(registry: Registry = REGISTRY) -> dict[str, dict[str, Any]]:
    """File name → JSON Schema, one per registered message type and version."""
    return {f"{spec.key}.json": spec.json_schema() for spec in registry.all()}


def asyncapi_document(registry: Registry = REGISTRY) -> dict[str, Any]:
    """An AsyncAPI 3.0 document of every subject: the registered facts and commands (the
    audit's ActionRecorded among them), the replies to commands and the dead letters (DLQ).

    Every registered message travels in an ``Envelope`` whose ``data`` is the message's
    schema. The models' ``$defs`` are hoisted into ``components/schemas``: a name shared by
    identical schemas is kept once, different schemas of one name are told apart by the
    key of the message that first uses them (``EventChanged.v1.Attendee``).
    """
    specs = registry.all()
    named: dict[str, dict[str, Any]] = {spec.key: _body(spec) for spec in specs}
    named.update(
        {
            "Envelope": Envelope.model_json_schema(),
            "Reply": Reply.model_json_schema(),
            "FactHeaders": _fact_headers(),
            "DeadLetterHeaders": _dead_letter_headers(),
        }
    )
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for spec in specs:
        channel_id = _channel_id(spec)
        messages[spec.key] = _message(spec)
        channels[channel_id] = {
            "address": spec.subject,
            "title": spec.subject,
            "description": (
                f"{spec.owner} publishes {spec.type} here; JetStream keeps it in the "
                f"{spec.owner.upper()} stream."
                if spec.kind == "fact"
                else f"Request/reply: send a {spec.type} request here; one {spec.owner} "
                "replica answers on the request's reply subject."
            ),
            "messages": {spec.key: {"$ref": f"#/components/messages/{spec.key}"}},
        }
        operation: dict[str, Any] = {
            "action": "send" if spec.kind == "fact" else "receive",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{spec.key}"}],
            "summary": f"{spec.owner} {'publishes' if spec.kind == 'fact' else 'answers'} {spec.type}",
        }
        if spec.kind == "command":
            operation["reply"] = {"$ref": "#/components/replies/CommandReply"}
            operation["bindings"] = {"nats": {"queue": spec.owner, "bindingVersion": _NATS_BINDING}}
        operations[f"{spec.owner}_{'send' if spec.kind == 'fact' else 'answer'}_{channel_id}"] = (
            operation
        )

    messages.update(_system_messages())
    channels.update(_system_channels())
    for service in SERVICES:
        operations[f"{service}_dead_letter"] = {
            "action": "send",
            "channel": {"$ref": "#/channels/dlq"},
            "messages": [{"$ref": "#/channels/dlq/messages/DeadLetter"}],
            "summary": f"{service} stores a message it could not handle in the DLQ stream",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Vestry",
            "version": "1",
            "description": (
                "Messages exchanged by the services "
                + ", ".join(SERVICES)
                + ". Facts are published to JetStream; commands are NATS request/reply and "
                "are answered with a Reply. Every fact and command travels in an Envelope."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "nats": {
                "host": "localhost:4222",
                "protocol": "nats",
                "title": "NATS with JetStream",
                "description": (
                    "Development: one NATS server on localhost:4222 (the default "
                    "VESTRY_NATS_URL). Production is a three-node JetStream cluster "
                    '"vestry" (clients on ports 4222, 4223 and 4224; see deploy/README.md), '
                    "where each service connects as its own NATS user."
                ),
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": _hoist(named),
            "messages": messages,
            "replies": {
                "CommandReply": {
                    "channel": {"$ref": "#/channels/reply"},
                    "messages": [{"$ref": "#/channels/reply/messages/Reply"}],
                }
            },
            "correlationIds": {
                "Correlation": {
                    "description": "Shared by every message of one piece of work.",
                    "location": "$message.payload#/correlation_id",
                }
            },
        },
    }


def _channel_id(spec: MessageSpec) -> str:
    return spec.subject.replace(".", "_") + f"_v{spec.version}"


def _body(spec: MessageSpec) -> dict[str, Any]:
    """The message's schema, without the ``$id`` that would rebase its refs in the document."""
    schema = spec.json_schema()
    del schema["$id"]
    return schema


def _message(spec: MessageSpec) -> dict[str, Any]:
    doc = (spec.model.__doc__ or "").strip()
    message: dict[str, Any] = {
        "name": spec.type,
        "title": f"{spec.type} v{spec.version}",
        "summary": doc.splitlines()[0],
        "description": doc,
        "payload": _enveloped(spec),
        "correlationId": {"$ref": "#/components/correlationIds/Correlation"},
    }
    if spec.kind == "fact":
        message["headers"] = {"$ref": _SCHEMAS + "FactHeaders"}
    return message


def _enveloped(spec: MessageSpec) -> dict[str, Any]:
    """The Envelope schema with its type and version fixed and ``data`` the message's schema."""
    schema = Envelope.model_json_schema()
    properties = schema["properties"]
    properties["type"] = {**properties["type"], "const": spec.type, "examples": [spec.type]}
    properties["version"] = {**properties["version"], "const": spec.version}
    properties["data"] = {"$ref": _SCHEMAS + spec.key}
    schema["title"] = f"{spec.key} envelope"
    schema["description"] = f"An Envelope whose data is a {spec.type} v{spec.version}."
    return schema


def _system_messages() -> dict[str, Any]:
    return {
        "Reply": {
            "name": "Reply",
            "title": "Reply to a command",
            "summary": "Every command's answer: ok with data, or not ok with error.",
            "description": (
                "Sent bare, not in an Envelope. `ok: true` carries what the command returns "
                "in `data`; `ok: false` carries `error` ({code, message, field}) and means "
                "nothing was changed. Codes include invalid (the request or a field does not "
                "validate; `field` names it), unsupported (another type or version than the "
                "subject takes), conflict, not_found, busy, too_large (the answer would not "
                "fit in one message: ask for a page or a narrower query) and internal. "
                "`request_id` and `correlation_id` are the answered envelope's. A command "
                "sent again with the same envelope id is answered with the bytes of its "
                "first answer and changes nothing, for as long as the service keeps answers "
                "(a day by default)."
            ),
            "payload": {"$ref": _SCHEMAS + "Reply"},
        },
        "DeadLetter": {
            "name": "DeadLetter",
            "title": "Dead letter",
            "summary": "A message a service could not handle, with where it came from and why.",
            "description": (
                "The original message's bytes, unchanged, published to the DLQ stream with "
                "headers naming its origin (subject, stream, sequence), the service and "
                "consumer that failed, the kind of failure and the error. `vestry dlq` lists "
                "them; a service takes its own back on `<service>.cmd.redrive`."
            ),
            "headers": {"$ref": _SCHEMAS + "DeadLetterHeaders"},
            "payload": {
                "description": (
                    "The original message as it arrived: an Envelope, except when "
                    "Vestry-Error-Kind is malformed, when it may be any bytes."
                ),
                "anyOf": [
                    {"$ref": _SCHEMAS + "Envelope"},
                    {"description": "Bytes that are not an Envelope (malformed)."},
                ],
            },
        },
    }


def _system_channels() -> dict[str, Any]:
    return {
        "reply": {
            "address": None,
            "title": "Reply subject of a request",
            "description": (
                "The requester's inbox (_INBOX.…), set by NATS as the reply subject of "
                "each command request; the answering service publishes its Reply there."
            ),
            "messages": {"Reply": {"$ref": "#/components/messages/Reply"}},
        },
        "dlq": {
            "address": "dlq.{service}.{subject}",
            "title": "Dead letters",
            "description": (
                "The DLQ stream (subjects dlq.>): one dead letter per message a service "
                "could not handle, on dlq.<service>.<original subject>."
            ),
            "parameters": {
                "service": {
                    "description": "The service that failed to handle the message.",
                    "enum": list(SERVICES),
                },
                "subject": {
                    "description": "The original message's subject, e.g. "
                    "subscriptions.membership.started (its dots included).",
                },
            },
            "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
        },
    }


def _fact_headers() -> dict[str, Any]:
    return {
        "title": "FactHeaders",
        "description": "NATS headers of a fact published from a service's outbox.",
        "type": "object",
        "properties": {
            "Nats-Msg-Id": {
                "type": "string",
                "description": "The envelope's id: JetStream drops a copy published again "
                "within the duplicate window.",
            }
        },
        "required": ["Nats-Msg-Id"],
    }


def _dead_letter_headers() -> dict[str, Any]:
    """The headers kernel.deadletter.dead_letter sets."""
    text = {"type": "string"}
    count = {"type": "string", "pattern": "^[0-9]+$"}
    properties = {
        "Vestry-Original-Subject": {**text, "description": "Subject the message arrived on."},
        "Vestry-Original-Stream": {**text, "description": "Stream it was read from, e.g. EVENTS."},
        "Vestry-Original-Sequence": {**count, "description": "Its sequence in that stream."},
        "Vestry-Service": {
            **text,
            "enum": list(SERVICES),
            "description": "Service that failed to handle it; only it redrives the letter.",
        },
        "Vestry-Consumer": {**text, "description": "Durable consumer that delivered it."},
        "Vestry-Error-Kind": {
            **text,
            "enum": list(FAILURE_KINDS),
            "description": "malformed: not an Envelope; unsupported: no handler for its type "
            "and version; invalid: the data does not validate; handler: the handler kept "
            "failing; undeliverable: delivered again and again without being settled.",
        },
        "Vestry-Error": {
            **text,
            "maxLength": 4000,
            "description": "The error, on one line (lines joined with ' | ').",
        },
        "Vestry-Deliveries": {**count, "description": "Deliveries before it was dead-lettered."},
        "Vestry-Failed-At": {
            **text,
            "format": "date-time",
            "description": "When it was dead-lettered.",
        },
        "Nats-Msg-Id": {
            **text,
            "description": "dlq:<consumer>:<stream>:<sequence>:<deliveries>, so that storing "
            "the same failure again makes no second copy.",
        },
    }
    return {
        "title": "DeadLetterHeaders",
        "description": "NATS headers of a dead letter: where the message came from and why it "
        "failed.",
        "type": "object",
        "properties": properties,
        "required": sorted(properties),
    }


def _hoist(named: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``named`` and every ``$defs`` entry in it as one flat set of component schemas.

    Refs to ``#/$defs/X`` become refs to ``#/components/schemas/<name of X>``. A def keeps
    its own name when every def of that name is the same schema (its nested defs included)
    and no top-level schema is called so; otherwise it is prefixed with the name of the
    first schema holding that variant.
    """
    tops = {name: copy.deepcopy(schema) for name, schema in named.items()}
    defs = {name: schema.pop("$defs", {}) for name, schema in tops.items()}
    variants: dict[str, dict[str, list[str]]] = {}  # def name → identity → holders
    for holder, own in defs.items():
        for def_name in own:
            identity = _identity(def_name, own)
            variants.setdefault(def_name, {}).setdefault(identity, []).append(holder)
    renames: dict[str, dict[str, str]] = {holder: {} for holder in tops}
    for def_name, by_identity in variants.items():
        shared = len(by_identity) == 1 and def_name not in tops
        for holders in by_identity.values():
            component = def_name if shared else f"{holders[0]}.{def_name}"
            for holder in holders:
                renames[holder][def_name] = component
    components: dict[str, dict[str, Any]] = {}

    def add(component: str, schema: dict[str, Any]) -> None:
        if component in components and components[component] != schema:
            raise ValueError(f"two different schemas would be components/schemas/{component}")
        components[component] = schema

    for holder, schema in tops.items():
        add(holder, _rewrite(schema, renames[holder], holder))
        for def_name, def_schema in defs[holder].items():
            add(renames[holder][def_name], _rewrite(def_schema, renames[holder], holder))
    return dict(sorted(components.items()))


def _identity(def_name: str, own: dict[str, Any]) -> str:
    """The def with every def it reaches, as canonical JSON."""
    reached: dict[str, Any] = {}
    pending = [def_name]
    while pending:
        name = pending.pop()
        if name in reached:
            continue
        reached[name] = own[name]
        pending.extend(ref.removeprefix(_DEFS) for ref in _refs(own[name]))
    return json.dumps(reached, sort_keys=True)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def _rewrite(node: Any, renames: dict[str, str], holder: str) -> Any:
    if isinstance(node, dict):
        out = {key: _rewrite(value, renames, holder) for key, value in node.items()}
        ref = node.get("$ref")
        if isinstance(ref, str):
            if ref.startswith(_DEFS):
                out["$ref"] = _SCHEMAS + renames[ref.removeprefix(_DEFS)]
            elif not ref.startswith("#/components/"):
                raise ValueError(f"{holder}: cannot place $ref {ref!r} in the AsyncAPI document")
        return out
    if isinstance(node, list):
        return [_rewrite(item, renames, holder) for item in node]
    return node


def write(directory: Path, registry: Registry = REGISTRY) -> list[Path]:
    """Write every schema and the AsyncAPI document to ``directory``; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    documents = {**schemas(registry), ASYNCAPI_FILE: asyncapi_document(registry)}
    for name, document in documents.items():
        path = directory / name
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


def drift(directory: Path = SNAPSHOT_DIR, registry: Registry = REGISTRY) -> list[str]:
    """How the registered messages differ from the committed snapshots, one line each."""
    problems = []
    current = {**schemas(registry), ASYNCAPI_FILE: asyncapi_document(registry)}
    for name, document in sorted(current.items()):
        path = directory / name
        if not path.exists():
            problems.append(
                f"{name}: no committed snapshot; run `vestry contracts export {directory}`"
            )
        elif json.loads(path.read_text()) != json.loads(json.dumps(document)):
            if name == ASYNCAPI_FILE:
                problems.append(f"{name}: the AsyncAPI document changed; re-export and commit it")
            else:
                problems.append(
                    f"{name}: the schema changed without a version bump; register a new version "
                    "and keep this one for the deprecation window"
                )
    for path in sorted(directory.glob("*.json")):
        if path.name not in current:
            problems.append(f"{path.name}: snapshot of a message no longer registered")
    return problems
