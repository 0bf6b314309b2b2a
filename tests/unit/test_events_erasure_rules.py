"""Events' rules for a person's data, without a broker or a store: what erasure leaves
of a booker, when the retention period runs out, and how a person is matched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contracts.personal import ERASED_NAME, is_erased_email
from services.events import domain
from services.events.settings import EventsSettings

NOW = datetime(2029, 3, 1, 12, 0, tzinfo=UTC)


def test_an_erased_booker_has_no_name_address_phone_or_sms_left() -> None:
    booker = domain.redacted_booker("3f1c9a6e-booking")

    assert booker.name == ERASED_NAME
    assert is_erased_email(booker.email)
    assert (booker.phone, booker.sms) == (None, False)
    assert set(booker.columns()) == {"name", "email", "phone", "sms"}
    assert domain.is_redacted(booker.email)


def test_two_erased_bookers_of_one_event_do_not_share_an_address() -> None:
    # An event holds one live booking per email: stand-ins must differ per booking.
    assert domain.redacted_booker("a").email != domain.redacted_booker("b").email
    assert domain.redacted_booker("a").email == domain.redacted_booker("a").email


def test_a_real_address_is_not_taken_for_an_erased_one() -> None:
    assert not domain.is_redacted("jo.bloggs@bury.example.gov.uk")
    assert not domain.is_redacted("someone@erased.example.org")


def test_bookings_are_kept_for_the_retention_period_after_the_event_ends() -> None:
    assert domain.retention_cutoff(NOW, 730) == NOW - timedelta(days=730)
    assert domain.retention_cutoff(NOW, 1) == NOW - timedelta(days=1)


def test_a_retention_of_zero_days_keeps_bookings_until_someone_asks() -> None:
    assert domain.retention_cutoff(NOW, 0) is None


@pytest.mark.parametrize(
    ("asked", "matched"),
    [
        ("07400 123456", "+447400123456"),
        ("+44 7400 123456", "+447400123456"),
        ("0161 234 5678", "0161 234 5678"),  # a landline: no booking holds one
        ("", None),
        (None, None),
    ],
)
def test_a_phone_is_matched_as_bookings_keep_it(asked: str | None, matched: str | None) -> None:
    assert domain.phone_to_match(asked, region="GB") == matched


def test_a_booking_that_waited_shows_when_it_was_promoted() -> None:
    made = NOW - timedelta(days=3)
    assert domain.promoted_at(made, NOW) == NOW
    assert domain.promoted_at(made, made) is None  # confirmed as it was made
    assert domain.promoted_at(made, None) is None  # still waiting, or cancelled while waiting


def test_the_retention_period_is_set_from_the_environment_and_two_years_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("VESTRY_EVENTS_BOOKING_RETENTION_DAYS", raising=False)
    assert EventsSettings(_env_file=None).booking_retention_days == 730  # type: ignore[call-arg]
    monkeypatch.setenv("VESTRY_EVENTS_BOOKING_RETENTION_DAYS", "0")
    assert EventsSettings(_env_file=None).booking_retention_days == 0  # type: ignore[call-arg]
