"""The subscriptions service's rules for a person's data: how a person is recognised in
the books, what stands in for them once erased, and what the law keeps."""

from __future__ import annotations

from contracts.personal import ERASED_EMAIL, ERASED_NAME, erased_email, is_erased_email
from services.subscriptions.domain.people import (
    Person,
    amount,
    booker_to_keep,
    is_own_customer,
    names_to_find,
    needles,
    only_counted,
    phone_digits,
    scrub,
    stand_in_email,
)

JO = Person.asking(" Jo.Bloggs@Bury.example.gov.uk ", "+44 7700 900123")


def test_a_person_is_found_by_their_email_in_any_case_and_spacing() -> None:
    assert JO.email == "jo.bloggs@bury.example.gov.uk"
    assert JO.has_email("JO.BLOGGS@bury.example.gov.uk")
    assert not JO.has_email("jo.bloggs@bolton.example.gov.uk")
    assert not JO.has_email(None)


def test_a_phone_matches_however_it_was_typed() -> None:
    for typed in ("+447700900123", "07700 900123", "0044 7700 900 123", "+44 7700-900123"):
        assert JO.has_phone(typed), typed
    assert not JO.has_phone("07700 900124")
    assert not JO.has_phone(None)
    assert not Person.asking("jo@example.org").has_phone("07700 900123")
    assert phone_digits("") is None
    assert JO.phone_forms() == ("+447700900123", "07700900123")


def test_each_record_gets_an_undeliverable_stand_in_of_its_own() -> None:
    first, second = stand_in_email("inv-1"), stand_in_email("inv-2")
    assert first != second
    assert is_erased_email(first) and is_erased_email(second)
    assert first == erased_email("inv-1")


def test_free_text_loses_every_mention_of_the_person_and_keeps_the_rest() -> None:
    text = "BACS from JO.BLOGGS@bury.example.gov.uk, ring 07700900123 or Jo Bloggs; ref 42"
    assert scrub(text, JO, {"Jo Bloggs"}) == (
        f"BACS from {ERASED_EMAIL}, ring {ERASED_NAME} or {ERASED_NAME}; ref 42"
    )
    assert scrub("Finance team, Bury Council", JO, {"Jo Bloggs"}) == "Finance team, Bury Council"


def test_short_or_single_word_names_are_not_searched_for_in_free_text() -> None:
    # "Ann" would match "Annual subscription"; "Jo" most words with "jo" in them.
    assert names_to_find({"Ann", "Jo", "Smith", "Ann Smith", None, ERASED_NAME}) == {"Ann Smith"}
    assert needles(JO, {"Ann", "Ann Smith"}) == (
        "jo.bloggs@bury.example.gov.uk",
        "+447700900123",
        "07700900123",
        "Ann Smith",
    )


def test_a_non_members_own_booking_keeps_their_name_as_the_customer() -> None:
    assert is_own_customer(member_id=None, billed_name="Ann Smith", booker_names={"Ann Smith"})
    # Billed to their organisation, or to a member: the organisation is the customer.
    assert not is_own_customer(
        member_id=None, billed_name="Example Trust", booker_names={"Ann Smith"}
    )
    assert not is_own_customer(member_id="m-1", billed_name="Ann Smith", booker_names={"Ann Smith"})


def test_a_booker_already_erased_is_not_named_on_a_new_line() -> None:
    assert booker_to_keep("Ann Smith", "Ann@Example.org") == ("Ann Smith", "ann@example.org")
    assert booker_to_keep(ERASED_NAME, ERASED_EMAIL) == (None, None)
    assert booker_to_keep("Ann Smith", erased_email("b-1")) == (None, None)


def test_an_export_gives_money_as_exact_strings_of_pounds() -> None:
    assert [amount(p) for p in (0, 5, 18_000, 123_456, -1_200)] == [
        "0.00",
        "0.05",
        "180.00",
        "1234.56",
        "-12.00",
    ]


def test_an_answer_lists_only_the_kinds_there_were() -> None:
    assert only_counted({"invoices": 2, "credit_notes": 0}) == {"invoices": 2}
    assert only_counted({}) == {}
