"""`vestry people forget` and `vestry people export`: a person's rights of erasure
(UK GDPR Article 17) and of access (Article 15), across every service."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vestry.connection import connected
from vestry.terminal import console, emit, fail, options_of, run

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

    from kernel.personal import Keyring
    from kernel.settings import Settings

people_app = typer.Typer(
    no_args_is_help=True, help="A person's data across every service: erase it, or export it."
)

EmailArgument = Annotated[str, typer.Argument(help="The person's email address.")]
PhoneOption = Annotated[
    str | None, typer.Option("--phone", help="Their mobile, if known (E.164), to match SMS too.")
]


@dataclass
class Erasure:
    """What each holder answered to one erasure request."""

    erasure_id: str
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    key_deleted: bool = False
    key_found: bool = False

    @property
    def waiting_for(self) -> list[str]:
        from contracts.people_v1 import HOLDERS

        return [service for service in HOLDERS if service not in self.answers]


async def _keyring(nc: Client, settings: Settings) -> Keyring:
    from kernel.personal import Keyring

    return await Keyring.connect(
        nc, nc.jetstream(), secret=settings.person_key_secret, replicas=settings.stream_replicas
    )


async def erase(
    nc: Client, email: str, phone: str | None, *, settings: Settings, timeout: float
) -> Erasure:
    """Ask every holder to erase the person, wait for each to say it has, then delete the
    person's key so that no fact that named them can be read again.

    The request is a fact on PEOPLE, so a holder that is down handles it when it
    comes back; until all three have answered, the key is kept (a holder still
    needs it to find the person) and running this again finishes the work.
    """
    from contracts import Envelope
    from contracts.people_v1 import ERASED_FACTS, PersonErasureRequested
    from contracts.personal import normalised_email
    from kernel.streams import PEOPLE_STREAM, STREAMS, ensure_streams

    js = nc.jetstream()
    keyring = await _keyring(nc, settings)
    # Created if missing, never changed: in production the admin declares streams and
    # the operator may not update them.
    await ensure_streams(
        js,
        duplicate_window_s=settings.duplicate_window_s,
        replicas=settings.stream_replicas,
        streams=[spec for spec in STREAMS if spec.name == PEOPLE_STREAM],
        update=False,
    )
    erasure = Erasure(erasure_id=str(uuid.uuid4()))
    answered = asyncio.Event()
    by_subject = {fact.SUBJECT: service for service, fact in ERASED_FACTS.items()}

    async def on_answer(msg: Msg) -> None:
        envelope = Envelope.from_bytes(msg.data)
        service = by_subject.get(msg.subject)
        if service is None or envelope.data.get("erasure_id") != erasure.erasure_id:
            return
        erasure.answers[service] = envelope.data
        if not erasure.waiting_for:
            answered.set()

    # Listen before asking: a holder may answer within milliseconds.
    subscriptions = [await nc.subscribe(subject, cb=on_answer) for subject in by_subject]
    try:
        request_fact = PersonErasureRequested(
            erasure_id=erasure.erasure_id, email=normalised_email(email), phone=phone
        )
        [sealed] = await keyring.seal([Envelope.wrap(request_fact, id=erasure.erasure_id)])
        await js.publish(
            request_fact.SUBJECT,
            sealed.to_bytes(),
            stream=PEOPLE_STREAM,
            headers={"Nats-Msg-Id": sealed.id},
        )
        try:
            await asyncio.wait_for(answered.wait(), timeout)
        except TimeoutError:
            return erasure
    finally:
        for subscription in subscriptions:
            await subscription.unsubscribe()
    erasure.key_found = await keyring.shred(email)
    erasure.key_deleted = True  # whether or not there was one, none is left
    return erasure


async def export(nc: Client, email: str, phone: str | None, *, timeout: float) -> dict[str, Any]:
    """Everything each holder keeps on the person, as one document."""
    from contracts.people_v1 import EXPORT_COMMANDS
    from contracts.personal import normalised_email
    from kernel.commands import request

    answers = await asyncio.gather(
        *(
            request(nc, command(email=email, phone=phone), timeout=timeout)
            for command in EXPORT_COMMANDS.values()
        )
    )
    return {
        "email": normalised_email(email),
        "phone": phone,
        "exported_at": datetime.now(UTC).isoformat(),
        "services": {answer["service"]: answer["records"] for answer in answers},
    }


@people_app.command("forget")
def people_forget(
    ctx: typer.Context,
    email: EmailArgument,
    phone: PhoneOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for every service to answer.")
    ] = 60.0,
) -> None:
    """Erase a person from every service; invoices stay, as the law requires."""
    from kernel.production import key_problem
    from kernel.settings import Settings
    from vestry import ops

    options = options_of(ctx)
    if not yes and not options.json:
        typer.confirm(f"Erase {email} from every service, for good?", abort=True)
    settings = Settings()
    if settings.env == "production":
        # The CLI finds the key it deletes with this secret: the example value, or one
        # unlike the services', would delete nothing of the person's.
        problem = key_problem("VESTRY_PERSON_KEY_SECRET", settings.person_key_secret)
        if problem:
            fail(f"refusing to erase in production: {problem}", code=78, options=options)

    async def go() -> Erasure:
        async with connected(options.nats) as nc:
            erasure = await erase(nc, email, phone, settings=settings, timeout=timeout)
            await ops.record(
                nc.jetstream(),
                "forget",
                url=options.nats,
                target=erasure.erasure_id,  # the record names no one
                filters={"erasure_id": erasure.erasure_id},
                result={
                    "answered": sorted(erasure.answers),
                    "waiting_for": erasure.waiting_for,
                    "key_deleted": erasure.key_deleted,
                },
            )
            return erasure

    erasure = run(options, go())
    result = {
        "erasure_id": erasure.erasure_id,
        "services": erasure.answers,
        "waiting_for": erasure.waiting_for,
        "key_deleted": erasure.key_deleted,
        "key_found": erasure.key_found,
    }
    if erasure.waiting_for:
        fail(
            f"not finished: {', '.join(erasure.waiting_for)} did not answer within {timeout:g}s. "
            "Each will act on the request when it next runs; the person's key is kept until "
            "then. Run this again once they are up to finish.",
            code=1,
            options=options,
            detail=result,
        )

    def render() -> None:
        for service, answer in erasure.answers.items():
            erased = ", ".join(f"{n} {kind}" for kind, n in answer.get("erased", {}).items())
            kept = ", ".join(f"{n} {kind}" for kind, n in answer.get("kept", {}).items())
            line = f"{service}: erased {erased or 'nothing held'}"
            console.print(line + (f"; kept as the law requires: {kept}" if kept else ""))
        if erasure.key_found:
            console.print(
                "Their key is deleted: no fact in any stream can be read for them again, "
                "and a replay or rebuild finds them erased."
            )
        else:
            console.print(
                "No key was held for this address: no fact named them, or "
                "VESTRY_PERSON_KEY_SECRET here differs from the services' (it must be the same)."
            )

    emit(options, result, render)


@people_app.command("export")
def people_export(
    ctx: typer.Context,
    email: EmailArgument,
    phone: PhoneOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the JSON here, not to stdout.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each service.")] = 30.0,
) -> None:
    """Everything Vestry holds on a person, from every service, as JSON (subject access)."""
    options = options_of(ctx)

    async def go() -> dict[str, Any]:
        async with connected(options.nats) as nc:
            return await export(nc, email, phone, timeout=timeout)

    document = run(options, go())
    text = json.dumps(document, indent=2, ensure_ascii=False, default=str)
    if output is None:
        typer.echo(text)
        return
    output.write_text(text + "\n", encoding="utf-8")
    counts = {
        service: sum(len(rows) for rows in records.values())
        for service, records in document["services"].items()
    }
    console.print(
        f"Wrote {output}: " + ", ".join(f"{service} {n} records" for service, n in counts.items())
    )
