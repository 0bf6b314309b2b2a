"""Domain rules and settings, without a broker or a store."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from contracts.subscriptions_v1 import MembershipStarted
from kernel.settings import Settings
from services.events.domain import membership_active
from services.notifications import domain as notifications
from services.notifications.mailer import Mailer
from services.notifications.store import Delivery
from services.subscriptions.domain import MembershipError, join


def test_member_joins_at_a_known_tier_with_its_email_lowercased() -> None:
    new = join(
        name="Bury Council",
        tier="upper-tier",
        billing_email="AP@Bury.example.gov.uk",
        joined_on=date(2026, 4, 1),
        name_taken=False,
    )
    assert (new.tier, new.billing_email, new.starts_on) == (
        "upper-tier",
        "ap@bury.example.gov.uk",
        date(2026, 4, 1),
    )


def test_unknown_tier_is_refused_naming_the_tiers() -> None:
    with pytest.raises(MembershipError, match="district, public-service, upper-tier") as refused:
        join(
            name="Bury Council",
            tier="gold",
            billing_email="a@b.gov.uk",
            joined_on=date(2026, 4, 1),
            name_taken=False,
        )
    assert (refused.value.code, refused.value.field) == ("invalid", "tier")


def test_a_name_already_taken_is_a_conflict() -> None:
    with pytest.raises(MembershipError) as refused:
        join(
            name="Bury Council",
            tier="district",
            billing_email="a@b.gov.uk",
            joined_on=date(2026, 4, 1),
            name_taken=True,
        )
    assert (refused.value.code, refused.value.field) == ("conflict", "name")


@pytest.mark.parametrize(
    ("on", "active"),
    [
        (date(2026, 3, 31), False),
        (date(2026, 4, 1), True),
        (date(2027, 3, 31), True),
        (date(2027, 4, 1), False),
    ],
)
def test_membership_covers_its_own_days_only(on: date, active: bool) -> None:
    assert membership_active(date(2026, 4, 1), date(2027, 3, 31), on) is active


def test_delivery_retries_grow_then_give_up() -> None:
    delays = [
        notifications.retry_delay(attempt) for attempt in range(1, notifications.MAX_ATTEMPTS + 1)
    ]
    assert delays[:-1] == sorted(delays[:-1]) and delays[-1] is None


def test_consumer_backoff_grows_and_stays_at_its_last_step() -> None:
    settings = Settings(retry_backoff_s=[1, 5, 30])
    assert [settings.retry_delay(n) for n in (1, 2, 3, 4, 9)] == [1, 5, 30, 30, 30]


def test_each_service_has_its_own_sqlite_file_unless_given_a_url(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, events_db="postgresql+asyncpg://vestry@db/events")
    assert (
        settings.database_url("subscriptions")
        == f"sqlite+aiosqlite:///{tmp_path}/subscriptions.sqlite3"
    )
    assert settings.database_url("events") == "postgresql+asyncpg://vestry@db/events"


def test_welcome_mail_is_multipart_with_a_stable_message_id() -> None:
    fact = MembershipStarted(
        membership_id="ms",
        member_id="m",
        member_name="Bury <Council>",
        tier="district",
        billing_email="ap@bury.example.gov.uk",
        starts_on=date(2026, 4, 1),
    )
    planned = notifications.welcome(fact)
    row = Delivery(
        id="d-1",
        cause_id="c",
        recipient=planned.recipient,
        channel=planned.channel,
        template=planned.template,
        context=json.dumps(planned.context),
    )
    mail = Mailer(Settings()).compose(row)
    again = Mailer(Settings()).compose(row)
    assert mail["Message-ID"] == again["Message-ID"]
    assert mail["To"] == "ap@bury.example.gov.uk"
    html = mail.get_body(preferencelist=("html",)).get_content()
    assert "Bury &lt;Council&gt;" in html  # autoescaped
    assert "Bury <Council>" in mail.get_body(preferencelist=("plain",)).get_content()
