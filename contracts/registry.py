"""The registry: which model and subject belong to each message type and version."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from contracts.envelope import Envelope, Message

M = TypeVar("M", bound=type[Message])


class UnknownMessage(LookupError):
    """Raised when an envelope names a type and version nobody registered."""


@dataclass(frozen=True)
class MessageSpec:
    model: type[Message]

    @property
    def type(self) -> str:
        return self.model.TYPE

    @property
    def version(self) -> int:
        return self.model.VERSION

    @property
    def subject(self) -> str:
        return self.model.SUBJECT

    @property
    def kind(self) -> str:
        return self.model.KIND

    @property
    def owner(self) -> str:
        return self.model.SUBJECT.split(".", 1)[0]

    @property
    def key(self) -> str:
        return f"{self.type}.v{self.version}"

    def json_schema(self) -> dict[str, Any]:
        schema = self.model.model_json_schema()
        schema["$id"] = f"urn:vestry:{self.key}"
        schema["x-subject"] = self.subject
        schema["x-kind"] = self.kind
        return schema


class Registry:
    """Maps (type, version) to its spec; one registry holds every Vestry message."""

    def __init__(self) -> None:
        self._specs: dict[tuple[str, int], MessageSpec] = {}
        self._loader: Callable[[], None] | None = None

    def load_with(self, loader: Callable[[], None]) -> None:
        """Import every message module (``loader``) before the first lookup, not before:
        a program that needs one module's messages does not pay for all of them."""
        self._loader = loader

    def _loaded(self) -> dict[tuple[str, int], MessageSpec]:
        loader, self._loader = self._loader, None
        if loader is not None:
            loader()
        return self._specs

    def register(self, model: M) -> M:
        for attribute in ("TYPE", "VERSION", "SUBJECT", "KIND"):
            if not hasattr(model, attribute):
                raise TypeError(f"{model.__name__} does not set {attribute}")
        _check_subject(model)
        key = (model.TYPE, model.VERSION)
        if key in self._specs and self._specs[key].model is not model:
            raise ValueError(f"{model.TYPE} v{model.VERSION} is registered twice")
        self._specs[key] = MessageSpec(model)
        return model

    def spec(self, type_: str, version: int) -> MessageSpec:
        try:
            return self._loaded()[(type_, version)]
        except KeyError:
            raise UnknownMessage(f"no message {type_} v{version} is registered") from None

    def spec_for(self, model: type[Message]) -> MessageSpec:
        return self.spec(model.TYPE, model.VERSION)

    def decode(self, envelope: Envelope) -> Message:
        """The envelope's body as its registered model; raises ValidationError if it does not fit."""
        return self.spec(envelope.type, envelope.version).model.model_validate(envelope.data)

    def all(self) -> list[MessageSpec]:
        return sorted(self._loaded().values(), key=lambda spec: (spec.subject, spec.version))

    def facts(self, owner: str | None = None) -> list[MessageSpec]:
        return [
            spec
            for spec in self.all()
            if spec.kind == "fact" and (owner is None or spec.owner == owner)
        ]

    def stream_subjects(self, owner: str) -> list[str]:
        """Wildcards covering ``owner``'s facts and none of its commands.

        A stream must never capture a command subject: JetStream would answer
        the request with its own PubAck before the service could.
        """
        entities = {spec.subject.split(".")[1] for spec in self.facts(owner)}
        return sorted(f"{owner}.{entity}.*" for entity in entities)


def _check_subject(model: type[Message]) -> None:
    parts = model.SUBJECT.split(".")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{model.__name__}: subject {model.SUBJECT!r} is not owner.x.y")
    if model.KIND == "fact" and parts[1] == "cmd":
        raise ValueError(f"{model.__name__}: a fact's subject cannot be a command subject")
    if model.KIND == "command" and parts[1] != "cmd":
        raise ValueError(f"{model.__name__}: a command's subject is <owner>.cmd.<action>")


REGISTRY = Registry()
register = REGISTRY.register
