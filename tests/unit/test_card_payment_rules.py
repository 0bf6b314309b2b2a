"""Card payments' rules without I/O: what a GOV.UK Pay status means for an invoice,
when an invoice can be paid by card, the signed pay link, and what production refuses
of the card payment settings."""

from __future__ import annotations

import pytest

from kernel import links, production
from kernel.settings import Settings
from services.subscriptions.domain.card_payments import (
    MOST_BY_CARD_PENCE,
    outcome_of,
    why_not_by_card,
)

KEY = "k" * 40


@pytest.mark.parametrize(
    ("status", "code", "outcome"),
    [
        ("created", None, "in_progress"),
        ("started", None, "in_progress"),
        ("submitted", None, "in_progress"),
        ("capturable", None, "in_progress"),
        ("success", None, "paid"),
        ("failed", "P0010", "failed"),
        ("failed", "P0020", "expired"),
        ("failed", "P0030", "cancelled"),
        ("cancelled", "P0040", "cancelled"),
        ("error", "P0050", "error"),
        ("failed", None, "failed"),
    ],
)
def test_only_success_is_paid_and_every_other_end_says_why_nothing_was_taken(
    status: str, code: str | None, outcome: str
) -> None:
    assert outcome_of(status, code) == outcome


def test_an_invoice_is_paid_by_card_only_while_something_is_owed_that_a_card_takes() -> None:
    assert why_not_by_card(status="issued", outstanding_pence=200_000) is None
    assert why_not_by_card(status="part_paid", outstanding_pence=1) is None
    assert "void" in (why_not_by_card(status="void", outstanding_pence=200_000) or "")
    assert "is paid" in (why_not_by_card(status="paid", outstanding_pence=0) or "")
    assert "credit note" in (why_not_by_card(status="credited", outstanding_pence=0) or "")
    assert why_not_by_card(status="issued", outstanding_pence=MOST_BY_CARD_PENCE) is None
    too_much = why_not_by_card(status="issued", outstanding_pence=MOST_BY_CARD_PENCE + 1)
    assert too_much and "bank transfer" in too_much


def test_the_pay_link_names_one_invoice_and_a_changed_one_is_refused() -> None:
    url = links.pay_url("https://vestry.example.org/", KEY, "inv-000012")
    assert url.startswith("https://vestry.example.org/pay/INV-000012?s=")
    signature = url.rsplit("=", 1)[1]
    assert links.pay_link_is_genuine(KEY, "INV-000012", signature)
    assert links.pay_link_is_genuine(KEY, "inv-000012", signature)
    assert not links.pay_link_is_genuine(KEY, "INV-000013", signature)
    assert not links.pay_link_is_genuine(KEY.upper(), "INV-000012", signature)
    # Not interchangeable with a booking link for the same text.
    assert signature != links.booking_url("", KEY, "INV-000012").rsplit("=", 1)[1]


def production_settings(**overrides: object) -> Settings:
    return Settings(
        env="production",
        nats_url="nats://subscriptions:p0a9f1c2e3d4b5a6978@127.0.0.1:4222",
        unsubscribe_secret=KEY,
        link_secret=KEY.replace("k", "l"),
        person_key_secret=KEY.replace("k", "p"),
        **overrides,  # type: ignore[arg-type]
    )


def test_production_refuses_an_example_pay_key_and_one_sent_in_plain_text() -> None:
    assert production.pay_problems(production_settings(), "subscriptions") == []
    example = production.pay_problems(production_settings(pay_api_key="change-me"), "subscriptions")
    assert example == ["VESTRY_PAY_API_KEY is the example value: set the service's GOV.UK Pay key"]
    plain = production.pay_problems(
        production_settings(pay_api_key="api_live_x" * 5, pay_api_url="http://pay.example.org"),
        "subscriptions",
    )
    assert len(plain) == 1 and plain[0].startswith("VESTRY_PAY_API_URL")
    local = production_settings(pay_api_key="api_live_x" * 5, pay_api_url="http://127.0.0.1:8090")
    assert production.pay_problems(local, "subscriptions") == []
    assert "VESTRY_PAY_API_KEY" in " ".join(
        production.check(production_settings(pay_api_key="change-me"), "subscriptions")
    )


def test_production_refuses_an_example_or_short_webhook_secret_but_not_none() -> None:
    assert production.pay_problems(production_settings(), "web") == []
    for secret in ("change-me", "short"):
        (problem,) = production.pay_problems(production_settings(pay_webhook_secret=secret), "web")
        assert problem.startswith("VESTRY_PAY_WEBHOOK_SECRET")
    assert production.pay_problems(production_settings(pay_webhook_secret=KEY), "web") == []
    # In development the same settings start.
    development = production_settings(pay_webhook_secret="change-me").model_copy(
        update={"env": "development"}
    )
    assert production.check(development, "web") == []
