"""What `vestry status` reports: services up or down, streams, consumers and their lag."""

from __future__ import annotations

import asyncio
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from pydantic import BaseModel

from contracts.system_v1 import DOORS, SERVICES, HealthReport, health_subject


class ServiceState(BaseModel):
    name: str
    up: bool
    report: HealthReport | None = None  # the first replica to answer
    replicas: list[HealthReport] = []  # every replica that answered, ordered by pid
    problem: str | None = None


class ConsumerState(BaseModel):
    name: str
    pending: int
    ack_pending: int
    redelivered: int


class StreamState(BaseModel):
    name: str
    messages: int
    bytes: int
    first_seq: int
    last_seq: int
    subjects: list[str]
    consumers: list[ConsumerState]


class Status(BaseModel):
    services: list[ServiceState]
    streams: list[StreamState]

    @property
    def healthy(self) -> bool:
        return all(service.up for service in self.services)

    def as_json(self) -> dict[str, Any]:
        return {"healthy": self.healthy, **self.model_dump(mode="json")}


async def service_state(
    nc: Client, name: str, timeout: float = 2.0, *, replicas_s: float = 0.0
) -> ServiceState:
    """Whether ``name`` answers its health request within ``timeout``, with the report of
    every replica that answers within ``replicas_s`` of the first (0: the first alone).

    Every replica answers health (it is not a queue group), so one request reaches
    them all; how many there are is not known here, hence the short wait for more."""
    loop = asyncio.get_running_loop()
    inbox = nc.new_inbox()
    answers: asyncio.Queue[Msg] = asyncio.Queue()
    subscription = await nc.subscribe(inbox, cb=answers.put)
    try:
        await nc.publish(health_subject(name), b"", reply=inbox)
        try:
            replies = [await asyncio.wait_for(answers.get(), timeout)]
        except TimeoutError:
            return ServiceState(name=name, up=False, problem=f"no answer in {timeout:.0f}s")
        if _no_responders(replies[0]):
            return ServiceState(name=name, up=False, problem="not running")
        deadline = loop.time() + replicas_s
        while (left := deadline - loop.time()) > 0:
            try:
                replies.append(await asyncio.wait_for(answers.get(), left))
            except TimeoutError:
                break
    finally:
        await subscription.unsubscribe()
    reports = [HealthReport.model_validate_json(reply.data) for reply in replies]
    return ServiceState(
        name=name,
        up=True,
        report=reports[0],
        replicas=sorted(reports, key=lambda report: report.pid),
    )


def _no_responders(msg: Msg) -> bool:
    """The server's own answer that nobody subscribes to the subject (status 503)."""
    return not msg.data and (msg.headers or {}).get("Status") == "503"


async def stream_states(nc: Client) -> list[StreamState]:
    js = nc.jetstream()
    states = []
    for info in sorted(await js.streams_info(), key=lambda info: info.config.name or ""):
        name = info.config.name or ""
        consumers = [
            ConsumerState(
                name=consumer.name,
                pending=consumer.num_pending or 0,
                ack_pending=consumer.num_ack_pending or 0,
                redelivered=consumer.num_redelivered or 0,
            )
            for consumer in sorted(await js.consumers_info(name), key=lambda c: c.name)
        ]
        states.append(
            StreamState(
                name=name,
                messages=info.state.messages,
                bytes=info.state.bytes,
                first_seq=info.state.first_seq,
                last_seq=info.state.last_seq,
                subjects=list(info.config.subjects or []),
                consumers=consumers,
            )
        )
    return states


async def gather(nc: Client, *, replicas_s: float = 0.5) -> Status:
    """Every service and the site with each of their replicas, and every stream."""
    services = await asyncio.gather(
        *(service_state(nc, name, replicas_s=replicas_s) for name in (*SERVICES, *DOORS))
    )
    return Status(services=list(services), streams=await stream_states(nc))
