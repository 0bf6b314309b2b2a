"""The OPS stream: a record of each operator action — what, with which filters,
when, by whom, and the result."""

from __future__ import annotations

import getpass
import json
import socket
import uuid
from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

OPS_STREAM = "OPS"
OPS_SUBJECTS = ["ops.action.*"]


async def ensure_ops_stream(js: JetStreamContext) -> None:
    try:
        await js.stream_info(OPS_STREAM)
    except NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=OPS_STREAM,
                subjects=OPS_SUBJECTS,
                storage=StorageType.FILE,
                description="Operator actions: replay, rebuild, redrive, purge.",
            )
        )


async def record(
    js: JetStreamContext, action: str, filters: dict[str, Any], result: dict[str, Any]
) -> None:
    """Store the action in OPS; raises if JetStream does not confirm it."""
    await ensure_ops_stream(js)
    entry = {
        "id": str(uuid.uuid4()),
        "action": action,
        "filters": filters,
        "at": datetime.now(UTC).isoformat(),
        "by": getpass.getuser(),
        "host": socket.gethostname(),
        "result": result,
    }
    await js.publish(
        f"ops.action.{action}",
        json.dumps(entry, default=str).encode(),
        stream=OPS_STREAM,
        headers={"Nats-Msg-Id": entry["id"]},
    )
