"""Who hears what and when: consent, topics, quiet hours, retries and signed links."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.notifications import domain
from services.notifications.domain import QuietHours, Reachable


def person(n: int, **overrides: object) -> Reachable:
    values: dict[str, object] = {
        "contact_id": f"c{n}",
        "email": f"p{n}@example.gov.uk",
        "mobile": f"+4474001234{n:02d}",
        "email_consent": True,
        "sms_consent": True,
        "topics": frozenset({"warp"}),
        "name": f"Person {n}",
    }
    values.update(overrides)
    return Reachable(**values)  # type: ignore[arg-type]


def test_uk_mobile_without_country_code_becomes_e164() -> None:
    assert domain.normalise_mobile("07400 123456") == "+447400123456"
    assert domain.normalise_mobile("+44 7400 123456") == "+447400123456"


@pytest.mark.parametrize("text", ["12345", "not a number", "0161 496 0000", "+44 7400 1234"])
def test_invalid_or_landline_numbers_are_refused(text: str) -> None:
    with pytest.raises(domain.InvalidPhone):
        domain.normalise_mobile(text)


def test_unknown_topic_is_refused_with_the_known_ones() -> None:
    with pytest.raises(domain.UnknownTopic, match="warp"):
        domain.check_topic("warpp")


def test_transactional_email_needs_no_consent_but_sms_does() -> None:
    no_sms = person(1, sms_consent=False, topics=frozenset())
    channels = [p.channel for p in domain.transactional(no_sms, "booking_confirmed", {})]
    assert channels == ["email"]
    both = [p.channel for p in domain.transactional(person(2), "booking_confirmed", {})]
    assert both == ["email", "sms"]
    assert [
        p.channel for p in domain.transactional(person(3), "invoice_issued", {}, sms_template=False)
    ] == ["email"]


def test_broadcast_reaches_subscribers_only_and_skips_sms_without_consent() -> None:
    contacts = [
        person(1),
        person(2, sms_consent=False),
        person(3, topics=frozenset({"newsletter"})),
        person(4, mobile=None, sms_consent=False),
    ]
    fan = domain.fan_out(
        contacts,
        topic="warp",
        channels=["email", "sms"],
        template="security_advisory",
        data={"title": "x"},
        urgent=False,
        unsubscribe=lambda cid: f"https://u/{cid}",
    )
    sent_to = sorted((p.channel, p.recipient) for p in fan.planned)
    assert sent_to == [
        ("email", "p1@example.gov.uk"),
        ("email", "p2@example.gov.uk"),
        ("email", "p4@example.gov.uk"),
        ("sms", "+447400123401"),
    ]
    assert fan.recipients == 3
    assert fan.skipped_for_consent == 2
    assert fan.planned[0].context["unsubscribe_url"] == "https://u/c1"


def test_two_contacts_sharing_a_mobile_hear_a_broadcast_once() -> None:
    fan = domain.fan_out(
        [person(1), person(2, mobile="+447400123401")],
        topic="warp",
        channels=["sms"],
        template="broadcast",
        data={},
        urgent=True,
    )
    assert len(fan.planned) == 1


def test_retry_delays_then_give_up() -> None:
    delays = [0.1, 0.5]
    assert [domain.retry_delay(n, delays) for n in (1, 2, 3)] == [0.1, 0.5, None]


def test_quiet_hours_defer_to_eight_in_the_morning_london_time() -> None:
    quiet = QuietHours.parse("21:00-08:00")
    assert quiet is not None
    # 22:30 in London in summer (BST) is 21:30 UTC
    evening = datetime(2026, 6, 9, 21, 30, tzinfo=UTC)
    assert quiet.wait_until(evening) == datetime(2026, 6, 10, 7, 0, tzinfo=UTC)
    early = datetime(2026, 12, 1, 6, 59, tzinfo=UTC)  # GMT in winter
    assert quiet.wait_until(early) == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert quiet.wait_until(datetime(2026, 12, 1, 8, 0, tzinfo=UTC)) is None
    assert quiet.wait_until(datetime(2026, 12, 1, 20, 59, tzinfo=UTC)) is None
    assert QuietHours.parse("") is None


def test_unsubscribe_links_are_signed() -> None:
    url = domain.unsubscribe_url("https://vestry.example.org/", "k", "c1", "warp")
    signature = url.rsplit("s=", 1)[1]
    assert url.startswith("https://vestry.example.org/unsubscribe?c=c1&t=warp&s=")
    assert domain.unsubscribe_link_is_genuine("k", "c1", "warp", signature)
    assert not domain.unsubscribe_link_is_genuine("k", "c2", "warp", signature)
    assert not domain.unsubscribe_link_is_genuine("other", "c1", "warp", signature)
