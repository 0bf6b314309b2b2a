"""What `vestry status` reports: services up or down, streams, consumers and their lag."""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
from nats.aio.client import Client
from pydantic import BaseModel

from contracts.system_v1 import DOORS, SERVICES, HealthReport, health_subject


class ServiceState(BaseModel):
    name: str
    up: bool
    report: HealthReport | None = None
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


async def service_state(nc: Client, name: str, timeout: float = 2.0) -> ServiceState:
    try:
        reply = await nc.request(health_subject(name), b"", timeout=timeout)
    except nats.errors.NoRespondersError:
        return ServiceState(name=name, up=False, problem="not running")
    except nats.errors.TimeoutError:
        return ServiceState(name=name, up=False, problem=f"no answer in {timeout:.0f}s")
    return ServiceState(name=name, up=True, report=HealthReport.model_validate_json(reply.data))


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


async def gather(nc: Client) -> Status:
    services = await asyncio.gather(*(service_state(nc, name) for name in (*SERVICES, *DOORS)))
    return Status(services=list(services), streams=await stream_states(nc))
