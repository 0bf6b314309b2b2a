"""JSON Schemas of every message and the AsyncAPI document describing the subjects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contracts.envelope import Envelope
from contracts.registry import REGISTRY, MessageSpec, Registry
from contracts.system_v1 import SERVICES

SNAPSHOT_DIR = Path(__file__).parent / "schemas"
ASYNCAPI_FILE = "asyncapi.json"


def schemas(registry: Registry = REGISTRY) -> dict[str, dict[str, Any]]:
    """File name → JSON Schema, one per registered message type and version."""
    return {f"{spec.key}.json": spec.json_schema() for spec in registry.all()}


def asyncapi_document(registry: Registry = REGISTRY) -> dict[str, Any]:
    """An AsyncAPI 3.0 document: a channel per subject, the service that sends or answers it."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    components: dict[str, Any] = {
        "schemas": {"Envelope": Envelope.model_json_schema()},
        "messages": {},
    }
    for spec in registry.all():
        channel_id = spec.subject.replace(".", "_") + f"_v{spec.version}"
        components["messages"][spec.key] = _message(spec)
        channels[channel_id] = {
            "address": spec.subject,
            "messages": {spec.key: {"$ref": f"#/components/messages/{spec.key}"}},
        }
        operations[f"{spec.owner}_{'send' if spec.kind == 'fact' else 'answer'}_{channel_id}"] = {
            "action": "send" if spec.kind == "fact" else "receive",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"{spec.owner} {'publishes' if spec.kind == 'fact' else 'answers'} {spec.type}",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Vestry",
            "version": "1",
            "description": "Messages exchanged by the services " + ", ".join(SERVICES) + ".",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": components,
    }


def _message(spec: MessageSpec) -> dict[str, Any]:
    return {
        "name": spec.type,
        "title": f"{spec.type} v{spec.version}",
        "summary": (spec.model.__doc__ or "").strip().splitlines()[0],
        "description": (spec.model.__doc__ or "").strip(),
        "payload": spec.json_schema(),
        "x-envelope": {"$ref": "#/components/schemas/Envelope"},
    }


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
