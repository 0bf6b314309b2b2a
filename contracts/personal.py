"""Which fields of a message name a person, and what stands in for them once erased.

A field annotated with :class:`Personal` holds a person's name, email or phone.
In a fact it travels sealed: encrypted with a key that belongs to that person
alone, so that erasing the person is deleting the key (crypto-shredding). The
person is the one whose email is in the field named by ``key`` (the field's own
value when ``key`` is None). A consumer that opens a fact whose key is gone
finds the erased stand-ins below in place of the person's details.

Only this module says which fields are personal; sealing and opening live with
the services' shared runtime, since they need keys and a cipher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

PersonalKind = Literal["name", "email", "phone"]

# RFC 2606 reserves .example: an address there can never be delivered.
ERASED_DOMAIN = "erased.example"
ERASED_EMAIL = f"erased@{ERASED_DOMAIN}"
ERASED_NAME = "(erased)"

# How a sealed value travels: this prefix, the person's id in the key store, a colon,
# then base64url of the 12-byte AES-GCM nonce followed by the ciphertext and tag.
SEALED_PREFIX = "vestry-sealed:v1:"
SEALED_PATTERN = "^vestry-sealed:v1:[0-9a-f]{40}:[A-Za-z0-9_=-]+$"


@dataclass(frozen=True)
class Personal:
    """Marks a field that names a person.

    ``kind`` says what it holds; ``key`` names the sibling field holding the
    email of the person it belongs to (None: the field is that email itself).
    """

    kind: PersonalKind
    key: str | None = None

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # In a fact the value travels sealed; the schema says both forms, and which
        # kind of personal data it is.
        plain = handler(core_schema)
        sealed = {"type": "string", "pattern": SEALED_PATTERN}
        return {"anyOf": [plain, sealed], "x-personal": self.kind}

    def erased(self, optional: bool) -> Any:
        """What a consumer sees in place of the value once the person's key is gone."""
        if optional or self.kind == "phone":
            return None
        return ERASED_EMAIL if self.kind == "email" else ERASED_NAME


PERSON_EMAIL = Personal("email")


def person_name(key: str = "email") -> Personal:
    return Personal("name", key)


def person_phone(key: str = "email") -> Personal:
    return Personal("phone", key)


def erased_email(tag: str = "") -> str:
    """An undeliverable address for an erased person; ``tag`` keeps redacted rows apart
    where a store wants them unique."""
    return f"erased-{tag}@{ERASED_DOMAIN}" if tag else ERASED_EMAIL


def is_erased_email(address: str | None) -> bool:
    """Whether ``address`` is a stand-in for an erased person (nobody to write to)."""
    return bool(address) and str(address).lower().endswith("@" + ERASED_DOMAIN)


def normalised_email(address: str) -> str:
    """The form a person's email is matched in, across every service."""
    return address.strip().lower()


def personal_fields(model: type[BaseModel]) -> dict[str, Personal]:
    """The fields of ``model`` (not of models nested in it) marked :class:`Personal`."""
    found: dict[str, Personal] = {}
    for name, field in model.model_fields.items():
        for mark in field.metadata:
            if isinstance(mark, Personal):
                found[name] = mark
    return found
