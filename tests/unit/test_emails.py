"""Email addresses in contracts are checked exactly as pydantic's EmailStr checks them,
whether an address is met for the first time or again."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic import EmailStr as PydanticEmailStr

from contracts.emails import EmailStr, checked_address, forget_checked

ours = TypeAdapter(EmailStr)
theirs = TypeAdapter(PydanticEmailStr)

ADDRESSES = [
    "finance@council.example.gov.uk",
    "Finance@Council.EXAMPLE.gov.uk",
    "  padded@council.example.gov.uk  ",
    "Jo Bloggs <jo@fire.example.org.uk>",
    "ünïcode@例え.jp",
    "no-at-sign",
    "two@@ats.example.com",
    "dot.@example.com",
    "someone@localhost",
    "someone@[127.0.0.1]",
    "line\nbreak@example.com",
    "x" * 70 + "@example.com",
    "",
]


def outcome(adapter: TypeAdapter[str], value: str) -> tuple[str, object]:
    try:
        return "ok", adapter.validate_python(value)
    except ValidationError as error:
        return "error", [(e["type"], e["msg"]) for e in error.errors()]


@pytest.mark.parametrize("address", ADDRESSES)
def test_each_address_gets_what_emailstr_gives_first_time_and_again(address: str) -> None:
    forget_checked()
    expected = outcome(theirs, address)
    assert outcome(ours, address) == expected
    assert outcome(ours, address) == expected  # remembered, or checked again if it failed


@given(st.text(max_size=40), st.sampled_from(["example.com", "Example.GOV.uk", "a", "x.y.z"]))
def test_any_local_part_and_domain_get_what_emailstr_gives(local: str, domain: str) -> None:
    address = f"{local}@{domain}"
    assert outcome(ours, address) == outcome(theirs, address)


def test_the_json_schema_is_emailstrs() -> None:
    class Ours(BaseModel):
        email: EmailStr

    class Theirs(BaseModel):
        email: PydanticEmailStr

    assert Ours.model_json_schema()["properties"] == Theirs.model_json_schema()["properties"]


def test_forgetting_empties_what_is_remembered() -> None:
    ours.validate_python("someone@council.example.gov.uk")
    assert checked_address.cache_info().currsize > 0
    forget_checked()
    assert checked_address.cache_info().currsize == 0
