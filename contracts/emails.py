"""Email addresses in messages, checked as pydantic's ``EmailStr`` checks them.

The same people recur: a booker's address is in the command and again in each fact
about the booking, a billing contact's in every invoice of a run, and a consumer or
a rebuild reads each of those facts again. Checking an address (``email-validator``)
costs about 50 us, more than the rest of a small message's validation, so each
distinct address is checked once per process and its normalised form remembered
(the most recent 8,192). An address that fails is checked again each time it comes,
with the same error. The JSON schema is ``EmailStr``'s: a string of format email.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic.networks import validate_email
from pydantic_core import core_schema

REMEMBERED = 8192


@lru_cache(maxsize=REMEMBERED)
def checked_address(address: str) -> str:
    """``address`` as ``EmailStr`` gives it, or its ``PydanticCustomError``."""
    return validate_email(address)[1]


def forget_checked() -> None:
    """Forget every address checked so far (after a person's erasure)."""
    checked_address.cache_clear()


class _Checked:
    @classmethod
    def __get_pydantic_core_schema__(
        cls, _source: type[Any], _handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            checked_address, core_schema.str_schema()
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        field_schema = handler(schema)
        field_schema.update(type="string", format="email")
        return field_schema


EmailStr = Annotated[str, _Checked]
