"""Declare Vestry's streams as the NATS admin user: at install, and after an upgrade
that changes a stream (its subjects, its dedupe window, its copies).

    set -a; . /etc/vestry/admin.env; set +a
    /opt/vestry/.venv/bin/python /opt/vestry/deploy/declare_streams.py

Creates SUBSCRIPTIONS, EVENTS, NOTIFICATIONS, PEOPLE and the DLQ as the services
declare them (kernel.streams), or brings them up to date, with
VESTRY_STREAM_REPLICAS copies; creates OPS, the audit stream (who did what,
recorded by the services, the web service and the CLI), append-only (no message
may be deleted from it, and it may not be purged), as the services would; creates
PERSON_KEYS, the person keys, as the services and the CLI would
(kernel.personal.ensure_keys_stream). The services may create their own stream,
the DLQ, OPS, PEOPLE and PERSON_KEYS if they are missing but never change one;
nobody changes OPS or PERSON_KEYS (new limits on PERSON_KEYS could drop keys, and
with them every personal field they open).

Prints each stream and exits 0 when every stream is as declared, 1 (naming what
differs) when one is not, 2 when NATS cannot be reached.
"""

from __future__ import annotations

import asyncio
import sys

import nats
from nats.js import JetStreamContext
from nats.js.api import StreamConfig, StreamInfo
from nats.js.errors import BadRequestError, NotFoundError

from kernel.personal import KEYS_STREAM, ensure_keys_stream, keys_stream_config
from kernel.settings import Settings
from kernel.streams import OPS_STREAM, STREAMS, differences, ensure_streams, stream_config

# The streams the admin brings up to date; OPS is created once and never changed.
CHANGEABLE = [spec for spec in STREAMS if not spec.append_only]


def ops_config(replicas: int, duplicate_window_s: float = 24 * 3600) -> StreamConfig:
    """OPS as the admin and the services declare it: the audit stream, append-only."""
    [spec] = [spec for spec in STREAMS if spec.name == OPS_STREAM]
    return stream_config(spec, duplicate_window_s=duplicate_window_s, replicas=replicas)


def ops_differences(existing: StreamConfig, wanted: StreamConfig) -> list[str]:
    have, want = existing.as_dict(), wanted.as_dict()
    changed = [
        k
        for k in ("storage", "num_replicas", "deny_delete", "deny_purge")
        if have.get(k) != want.get(k)
    ]
    if sorted(have.get("subjects") or []) != sorted(want.get("subjects") or []):
        changed.append("subjects")
    return changed


def keys_config(replicas: int) -> StreamConfig:
    """PERSON_KEYS as kernel.personal.ensure_keys_stream creates it."""
    return keys_stream_config(replicas)


KEYS_DECLARED = (
    "subjects",
    "storage",
    "discard",
    "discard_new_per_subject",
    "deny_purge",
    "max_msgs_per_subject",
    "num_replicas",
    "allow_direct",
)


def keys_differences(existing: StreamConfig, wanted: StreamConfig) -> list[str]:
    have, want = existing.as_dict(), wanted.as_dict()
    changed = [k for k in KEYS_DECLARED if k != "subjects" and have.get(k) != want.get(k)]
    if sorted(have.get("subjects") or []) != sorted(want.get("subjects") or []):
        changed.insert(0, "subjects")
    return changed


# A cluster that has just started may refuse a three-replica stream for a moment
# ("insufficient resources" / no suitable peers) while it counts its nodes.
PEER_OFFLINE = 10005


async def declare(js: JetStreamContext, settings: Settings, attempts: int = 10) -> list[str]:
    """Declare every stream; what is still not as declared, one line each."""
    for attempt in range(1, attempts + 1):
        try:
            await ensure_streams(
                js,
                duplicate_window_s=settings.duplicate_window_s,
                replicas=settings.stream_replicas,
                streams=CHANGEABLE,
            )
            ops = await _ensure_ops(
                js, ops_config(settings.stream_replicas, settings.duplicate_window_s)
            )
            keys = await _ensure_keys(js, settings.stream_replicas)
            break
        except BadRequestError as error:
            if error.err_code != PEER_OFFLINE or attempt == attempts:
                raise
            print(f"the cluster is still placing streams ({error.description}); trying again")
            await asyncio.sleep(1)
    problems = []
    for spec in CHANGEABLE:
        wanted = stream_config(
            spec, duplicate_window_s=settings.duplicate_window_s, replicas=settings.stream_replicas
        )
        info = await js.stream_info(spec.name)
        if changed := differences(info.config, wanted):
            problems.append(f"{spec.name}: differs in {', '.join(changed)}")
        print(f"{spec.name}: {info.state.messages} messages, {info.config.num_replicas} copies")
    if changed := ops_differences(
        ops.config, ops_config(settings.stream_replicas, settings.duplicate_window_s)
    ):
        problems.append(
            f"{OPS_STREAM}: differs in {', '.join(changed)}; nobody may change it: "
            'see deploy/README.md, "Streams"'
        )
    print(f"{OPS_STREAM}: {ops.state.messages} records, {ops.config.num_replicas} copies")
    if changed := keys_differences(keys.config, keys_config(settings.stream_replicas)):
        problems.append(
            f"{KEYS_STREAM}: differs in {', '.join(changed)}; nobody may change it: "
            'see deploy/README.md, "Person keys"'
        )
    print(f"{KEYS_STREAM}: {keys.state.messages} keys, {keys.config.num_replicas} copies")
    return problems


async def _ensure_ops(js: JetStreamContext, wanted: StreamConfig) -> StreamInfo:
    """OPS as it is, or created; never updated."""
    try:
        return await js.stream_info(OPS_STREAM)
    except NotFoundError:
        info = await js.add_stream(wanted)
        print(f"{OPS_STREAM}: created")
        return info


async def _ensure_keys(js: JetStreamContext, replicas: int) -> StreamInfo:
    """PERSON_KEYS as it is, or created as the services would create it; never updated."""
    try:
        return await js.stream_info(KEYS_STREAM)
    except NotFoundError:
        await ensure_keys_stream(js, replicas=replicas)
        print(f"{KEYS_STREAM}: created")
        return await js.stream_info(KEYS_STREAM)


async def main() -> int:
    settings = Settings()
    try:
        client = await nats.connect(
            settings.nats_url.split(","),
            name="vestry-declare-streams",
            inbox_prefix=settings.inbox_prefix(),
            connect_timeout=5,
            max_reconnect_attempts=3,
        )
    except Exception as error:
        print(f"cannot reach NATS ({error or type(error).__name__})", file=sys.stderr)
        return 2
    try:
        problems = await declare(client.jetstream(timeout=15), settings)
    finally:
        await client.close()
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
