"""A Vestry service as a FastStream app: its store, its commands, the facts it
consumes, its outbox relay and its health answer, started and stopped together."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import nats
import nats.errors
from faststream import FastStream
from faststream.exceptions import SkipMessage
from faststream.nats import NatsBroker, NatsResponse
from faststream.nats.annotations import NatsMessage
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from pydantic import BaseModel, ValidationError
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import Envelope, Message, new_message_id
from contracts.people_v1 import HOLDERS
from contracts.system_v1 import (
    CommandError,
    ConsumerLag,
    DeadLettersReport,
    DeadLettersRequest,
    HealthReport,
    RebuildReport,
    RebuildRequest,
    RedriveReport,
    RedriveRequest,
    ReplayReport,
    ReplayRequest,
    Reply,
    dead_letters_subject,
    health_subject,
    rebuild_subject,
    redrive_subject,
    replay_subject,
)
from kernel import audit, collector, commands, migrations, outbox, production
from kernel.applier import Applier, Handler
from kernel.consumer import FactConsumer
from kernel.deadletter import dead_letters_of
from kernel.personal import Keyring
from kernel.rebuild import ReadModel, rebuild
from kernel.redrive import redrive
from kernel.replay import replay
from kernel.settings import Settings
from kernel.store import (
    create_engine,
    finish_abandoned_closes,
    reading_session_factory,
    redacted,
    scrub_after_erasure,
    session_factory,
)
from kernel.streams import DLQ_STREAM, ensure_streams, stream_for_subject, streams_of

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)


class Service:
    """One service process: declare its commands and consumed facts, then run ``app``."""

    def __init__(
        self, name: str, *, migrations_dir: Path, settings: Settings | None = None
    ) -> None:
        self.name = name
        self.settings = settings or Settings()
        self.database_url = self.settings.database_url(name)
        self.engine = create_engine(self.database_url)
        self.sessions = session_factory(self.engine)
        self.reading_sessions = reading_session_factory(self.engine)
        self._migrations_dir = migrations_dir
        self.broker = NatsBroker(
            self.settings.nats_url.split(","),
            name=f"vestry-{name}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            log_level=logging.DEBUG,
            inbox_prefix=self.settings.inbox_prefix(),  # its user's own inbox only
        )
        self._consumed: dict[str, dict[type[Message], Handler]] = {}
        self.consumers: list[FactConsumer] = []
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.keyring: Keyring | None = None
        self.relay: outbox.OutboxRelay | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._workers: list[Callable[[Service], Coroutine[Any, Any, None]]] = []
        # Health is not a queue group: every replica answers, so `vestry status` lists each.
        self.broker.subscriber(health_subject(name))(self._health_endpoint)
        # Operators' requests, like commands, are parsed by pydantic from the bytes.
        for subject, endpoint in (
            (replay_subject(name), self._replay_endpoint),
            (redrive_subject(name), self._redrive_endpoint),
            (rebuild_subject(name), self._rebuild_endpoint),
            (dead_letters_subject(name), self._dead_letters_endpoint),
        ):
            self.broker.subscriber(subject, queue=name, decoder=_undecoded)(endpoint)
        self._read_model: ReadModel | None = None
        self._backlog: Callable[[AsyncSession], Awaitable[int]] | None = None
        self.batchers: dict[str, commands.CommandBatcher] = {}
        self._batch_subscriptions: list[Subscription] = []
        self.app = FastStream(
            self.broker,
            on_startup=[self.prepare],
            after_startup=[self.start_workers],
            on_shutdown=[self.stop_batched_commands, self.stop_workers],
            after_shutdown=[self.close],
        )

    # Declaring what the service does

    def command(
        self, model: type[M], *, reads_only: bool = False
    ) -> Callable[[commands.CommandHandler], commands.CommandHandler]:
        """Answer ``model`` on its subject, shared by every replica (queue group); a query
        that never writes may say ``reads_only`` and take no write lock
        (``kernel.commands.answer_once``)."""

        def register(handler: commands.CommandHandler) -> commands.CommandHandler:
            async def endpoint(msg: NatsMessage) -> NatsResponse:
                _refuse_unless_answerable(msg)
                reply = await commands.answer_once(
                    msg.body,
                    model=model,
                    handler=handler,
                    sessions=self.reading_sessions if reads_only else self.sessions,
                    on_commit=self.wake_relay,
                    max_payload=self.max_payload(),
                    reply_to=msg.reply_to,
                    reads_only=reads_only,
                )
                # The bytes as answer_once made them: a retry's answer is the first's, exactly.
                return NatsResponse(reply, headers={"content-type": "application/json"})

            endpoint.__name__ = f"{self.name}_{model.TYPE}"
            # The body left as bytes for answer_once to parse: FastStream's own JSON
            # decoding raises RecursionError on deeply nested input, and no answer goes.
            self.broker.subscriber(
                model.SUBJECT, queue=self.name, title=model.SUBJECT, decoder=_undecoded
            )(endpoint)
            return handler

        return register

    def command_batch(
        self, model: type[M], *, max_batch: int = commands.CommandBatcher.MAX_BATCH
    ) -> Callable[[commands.BatchHandler], commands.BatchHandler]:
        """Answer ``model`` like ``command``, but through one writer that takes the
        requests waiting, in arrival order, and answers them a batch per transaction
        (``kernel.commands.CommandBatcher``): for a command that comes in rushes. The
        handler takes the whole batch (``kernel.commands.BatchHandler``)."""

        def register(handler: commands.BatchHandler) -> commands.BatchHandler:
            self.batchers[model.SUBJECT] = commands.CommandBatcher(
                model=model,
                handler=handler,
                sessions=self.sessions,
                on_commit=self.wake_relay,
                max_batch=max_batch,
                max_payload=self.max_payload,
            )
            return handler

        return register

    def consume(self, model: type[M]) -> Callable[[Handler], Handler]:
        """Apply ``model`` facts with the handler, through this service's durable consumer."""

        def register(handler: Handler) -> Handler:
            stream = stream_for_subject(model.SUBJECT).name
            self._consumed.setdefault(stream, {})[model] = handler
            return handler

        return register

    def read_model(
        self, tables: Sequence[Table], handlers: Mapping[type[Message], Handler]
    ) -> None:
        """Declare the tables built only from other services' facts, and their handlers,
        so that `vestry rebuild` can drop them and replay the streams."""
        self._read_model = ReadModel(tuple(tables), dict(handlers))

    def backlog(self, count: Callable[[AsyncSession], Awaitable[int]]) -> None:
        """Report ``count(session)`` in health as work still owed (mail due, say), so an
        operator or the demo can wait until the service has caught up."""
        self._backlog = count

    def worker(self, run: Callable[[Service], Coroutine[Any, Any, None]]) -> None:
        """Run ``run(service)`` beside the consumers for as long as the service runs."""
        self._workers.append(run)

    def consumed_streams(self) -> list[str]:
        """The streams this service reads facts from."""
        return sorted(self._consumed)

    def applier(self, stream: str) -> Applier:
        """The one path by which this service applies facts from ``stream``."""
        return Applier(
            scope=self.name,
            handlers=self._consumed.get(stream, {}),
            sessions=self.sessions,
            keyring=self.keyring,
        )

    # Running

    async def prepare(self) -> None:
        """Migrate the store, connect to JetStream and declare streams and consumers."""
        production.require(self.settings, self.name)  # in production, no example secrets
        await migrations.upgrade(self.engine, self._migrations_dir)
        self.nc = await nats.connect(
            self.settings.nats_url.split(","),
            name=f"vestry-{self.name}-jetstream",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            allow_reconnect=True,
            inbox_prefix=self.settings.inbox_prefix(),  # its user's own inbox only
        )
        self.js = self.nc.jetstream(timeout=10)
        if self.name in HOLDERS:  # it publishes and reads facts that name people
            self.keyring = await Keyring.connect(
                self.nc,
                self.js,
                secret=self.settings.person_key_secret,
                replicas=self.settings.stream_replicas,
            )
        # Each service declares only its own stream and the DLQ; a stream it
        # consumes is its owner's to declare, and the consumer waits for it.
        await ensure_streams(
            self.js,
            duplicate_window_s=self.settings.duplicate_window_s,
            replicas=self.settings.stream_replicas,
            streams=streams_of(self.name),
        )
        self.relay = outbox.OutboxRelay(
            self.sessions,
            self.js,
            batch=self.settings.relay_batch,
            poll_interval=self.settings.relay_poll_s,
            keep_sent_s=self.settings.outbox_retention_s,
            keep_handled_s=self.settings.inbox_retention_s,
            keep_answers_s=self.settings.command_answer_retention_s,
            keyring=self.keyring,
        )
        await self._take_batched_commands()
        self.consumers = [
            FactConsumer(
                service=self.name,
                stream=stream,
                applier=self.applier(stream),
                js=self.js,
                settings=self.settings,
                on_commit=self.wake_relay,
                after_erasure=partial(scrub_after_erasure, self.engine),
            )
            for stream in sorted(self._consumed)
        ]
        for consumer in self.consumers:
            try:
                await consumer.declare()
            except NotFoundError:
                log.info(
                    "%s: stream %s not there yet; waiting for its owner to declare it",
                    consumer.spec.durable,
                    consumer.spec.stream,
                )

    async def start_workers(self) -> None:
        assert self.relay is not None
        self._tasks = [asyncio.create_task(self.relay.run(), name=f"{self.name}-relay")]
        self._tasks += [
            asyncio.create_task(consumer.run(), name=consumer.spec.durable)
            for consumer in self.consumers
        ]
        self._tasks += [
            asyncio.create_task(run(self), name=f"{self.name}-worker") for run in self._workers
        ]
        collector.settle()  # started: what start-up allocated is out of the collector's way
        log.info(
            "%s ready: store %s, consuming %s",
            self.name,
            redacted(self.database_url),
            ", ".join(c.spec.durable for c in self.consumers) or "nothing",
        )

    async def stop_workers(self) -> None:
        """Cancel the relay, consumers and workers and wait until each has stopped.

        nats-py swallows a cancellation that lands inside a publish or flush,
        and the task would then carry on; so a task still running a moment
        later is cancelled again, until it stops.
        """
        pending, self._tasks = set(self._tasks), []
        for task in pending:
            task.cancel()
        while pending:
            _, pending = await asyncio.wait(pending, timeout=0.2)
            for task in pending:
                log.info(
                    "%s: %s ignored its cancellation; cancelling again", self.name, task.get_name()
                )
                task.cancel()

    async def _take_batched_commands(self) -> None:
        """Subscribe each batched command straight on nats-py: its callback only queues
        the request, in the order NATS delivers them (FastStream's per-message dispatch
        would cost more than the booking itself). Answers go back on the same
        connection, the one a reply is allowed from (``allow_responses``)."""
        assert self.nc is not None
        for subject, batcher in self.batchers.items():

            async def take(msg: Msg, batcher: commands.CommandBatcher = batcher) -> None:
                if not commands.answerable(msg.reply):
                    log.warning(
                        "%s: dropped a request whose reply goes to %s", msg.subject, msg.reply
                    )
                    return
                batcher.submit(msg.data, msg.respond if msg.reply else _nobody)

            self._batch_subscriptions.append(
                await self.nc.subscribe(subject, queue=self.name, cb=take)
            )

    async def stop_batched_commands(self) -> None:
        """Take no more batched commands (the other replicas get them) and answer every
        one already taken."""
        subscriptions, self._batch_subscriptions = self._batch_subscriptions, []
        for subscription in subscriptions:
            with suppress(nats.errors.Error):
                await subscription.unsubscribe()
        for batcher in self.batchers.values():
            await batcher.drain()

    async def close(self) -> None:
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()
        await self.engine.dispose()
        await finish_abandoned_closes()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Service]:
        """Run in this event loop, as the app would, until the block ends (tests, benchmarks)."""
        await self.prepare()
        await self.broker.start()
        await self.start_workers()
        try:
            yield self
        finally:
            await self.stop_batched_commands()
            await self.stop_workers()
            await self.broker.stop()
            await self.close()

    def max_payload(self) -> int | None:
        """The most bytes a message may carry on this service's NATS servers (their
        ``max_payload``), once connected."""
        return self.nc.max_payload if self.nc is not None and self.nc.is_connected else None

    def wake_relay(self) -> None:
        if self.relay is not None:
            self.relay.wake()

    # Health

    async def health(self) -> HealthReport:
        assert self.js is not None
        lags = []
        for consumer in self.consumers:
            try:
                info = await self.js.consumer_info(consumer.spec.stream, consumer.spec.durable)
            except NotFoundError:  # its stream's owner has not declared it yet
                continue
            lags.append(
                ConsumerLag(
                    stream=consumer.spec.stream,
                    consumer=consumer.spec.durable,
                    pending=info.num_pending or 0,
                    ack_pending=info.num_ack_pending or 0,
                    redelivered=info.num_redelivered or 0,
                )
            )
        async with self.sessions() as session:
            unsent = await outbox.unsent_count(session)
            backlog = await self._backlog(session) if self._backlog else 0
        return HealthReport(
            service=self.name,
            version=_version(),
            pid=os.getpid(),
            store=redacted(self.database_url),
            outbox_unsent=unsent,
            backlog=backlog,
            consumers=lags,
        )

    async def _health_endpoint(self, msg: NatsMessage) -> dict[str, Any]:
        _refuse_unless_answerable(msg)
        return (await self.health()).model_dump(mode="json")

    # Operators: replay and redrive

    async def replay(self, request: ReplayRequest) -> ReplayReport:
        """Replay part of a stream into this service; refused for a stream it does not read."""
        assert self.js is not None and self.nc is not None
        if request.stream not in self._consumed:
            reads = ", ".join(sorted(self._consumed)) or "no stream"
            raise commands.Refused(
                "not_consumed", f"{self.name} reads {reads}, not {request.stream}", "stream"
            )
        nc = self.nc

        async def progress(done: int, total: int) -> None:
            if request.progress_subject:
                await nc.publish(
                    request.progress_subject, json.dumps({"done": done, "total": total}).encode()
                )

        report = await replay(
            self.js, self.applier(request.stream), request, service=self.name, progress=progress
        )
        self.wake_relay()
        return report

    async def redrive(self, request: RedriveRequest) -> RedriveReport:
        assert self.js is not None
        report = await redrive(self.js, self.applier, request, service=self.name)
        self.wake_relay()
        return report

    async def dead_letters(self, request: DeadLettersRequest) -> DeadLettersReport:
        """This service's dead letters, for those who may not read the DLQ themselves."""
        assert self.js is not None
        return await dead_letters_of(self.js, self.name, request)

    async def _dead_letters_endpoint(self, msg: NatsMessage) -> dict[str, Any]:
        _refuse_unless_answerable(msg)
        return await _operate(msg.body or b"{}", DeadLettersRequest, self.dead_letters)

    async def rebuild(self, _request: RebuildRequest) -> RebuildReport:
        """Drop the read models and rebuild them from the streams, live consumption paused."""
        assert self.js is not None
        if self._read_model is None:
            raise commands.Refused(
                "nothing_to_rebuild", f"{self.name} keeps no read model of other services' facts"
            )
        await self.stop_workers()
        try:
            return await rebuild(
                self.js, self.engine, self._read_model, service=self.name, keyring=self.keyring
            )
        finally:
            await self.start_workers()

    async def _rebuild_endpoint(self, msg: NatsMessage) -> dict[str, Any]:
        _refuse_unless_answerable(msg)
        return await _operate(msg.body or b"{}", RebuildRequest, self._recorded(msg, "rebuild"))

    async def _replay_endpoint(self, msg: NatsMessage) -> dict[str, Any]:
        _refuse_unless_answerable(msg)
        return await _operate(msg.body, ReplayRequest, self._recorded(msg, "replay"))

    async def _redrive_endpoint(self, msg: NatsMessage) -> dict[str, Any]:
        _refuse_unless_answerable(msg)
        return await _operate(msg.body, RedriveRequest, self._recorded(msg, "redrive"))

    def _recorded(self, msg: NatsMessage, action: str) -> Callable[[Any], Awaitable[BaseModel]]:
        """The operation ``action`` (replay, redrive, rebuild), recorded in the audit
        stream once it is done: through the outbox, in a transaction of its own right
        after the work. A refused or failed one records nothing; a dry run is recorded."""
        operation = {"replay": self.replay, "redrive": self.redrive, "rebuild": self.rebuild}

        async def run(request: Any) -> BaseModel:
            report = await operation[action](request)
            await self.record_operation(action, request, report, msg)
            return report

        return run

    async def record_operation(
        self, action: str, request: BaseModel, report: BaseModel, msg: NatsMessage
    ) -> None:
        """Write the ActionRecorded of an operator's replay, redrive or rebuild to the
        outbox. Its request is no envelope: the request id and a staff member, if any,
        come in headers (``kernel.audit``); who asked is otherwise the reply's NATS user."""
        headers = msg.headers or {}
        request_id = headers.get(audit.REQUEST_ID_HEADER) or new_message_id()
        actor = audit.actor_in(headers)
        filters = request.model_dump(mode="json", exclude={"progress_subject"})
        targets = {"replay": filters.get("stream"), "redrive": DLQ_STREAM, "rebuild": self.name}
        record = audit.action_recorded(
            action,
            service=self.name,
            by=audit.performer(actor, msg.reply_to),
            target=targets[action],
            filters=filters,
            result=report.model_dump(mode="json"),
            dry_run=bool(filters.get("dry_run")),
            request_id=request_id[:64],
        )
        envelope = Envelope.wrap(record, id=audit.record_id(self.name, action, request_id))
        async with self.sessions() as session, session.begin():
            await outbox.add(session, envelope, record.SUBJECT)
        self.wake_relay()


def _refuse_unless_answerable(msg: NatsMessage) -> None:
    """Drop, unhandled and unanswered, a request whose reply is not an inbox
    (``kernel.commands.answerable``)."""
    if not commands.answerable(msg.reply_to):
        log.warning(
            "%s: dropped a request whose reply goes to %s", msg.raw_message.subject, msg.reply_to
        )
        raise SkipMessage


async def _operate(
    raw: bytes, model: type[Any], operation: Callable[[Any], Awaitable[BaseModel]]
) -> dict[str, Any]:
    """Validate an operator's request, run it, and answer with a Reply."""
    try:
        request = model.model_validate_json(raw)
    except ValidationError as error:
        return Reply(ok=False, error=commands.validation_error(error)).model_dump(mode="json")
    try:
        result = await operation(request)
    except commands.Refused as refusal:
        return Reply(ok=False, error=refusal.error).model_dump(mode="json")
    except Exception as error:
        log.exception("%s failed", model.__name__)
        failure = CommandError(code="internal", message=f"{model.__name__} failed: {error}")
        return Reply(ok=False, error=failure).model_dump(mode="json")
    return Reply(ok=True, data=result.model_dump(mode="json")).model_dump(mode="json")


async def _undecoded(msg: NatsMessage) -> bytes:
    """A command's body as it came: ``kernel.commands`` parses it."""
    return msg.body


async def _nobody(_reply: bytes) -> None:
    """Where the answer to a request that asked for none goes."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vestry")
    except PackageNotFoundError:
        return "0+unknown"


def run(service: Service) -> None:
    """Run ``service`` until SIGINT or SIGTERM; in production, not at all on unsafe settings."""
    production.refuse_unsafe_start(service.settings, service.name)
    logging.basicConfig(
        level=os.environ.get("VESTRY_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s {service.name} %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(service.app.run())
