"""No example secret in production: with VESTRY_ENV=production every service and the
site refuse to start, naming each problem, on the deploy examples as shipped, a key
that is missing, an example or short (every service's person-key secret included), or
plain-text SMTP to another host; the same settings start in development, and `vestry
dev` stays development."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from contracts.envelope import derived_message_id
from contracts.system_v1 import DOORS, SERVICES
from kernel import production
from kernel.settings import Settings
from services.notifications.directory import contact_id_for, contact_id_key
from services.web.settings import WebSettings
from tests.deploy_support import ENV_DIR, read_env
from vestry.devstack import DevStack

ROOT = Path(__file__).resolve().parents[2]
KEY = "k" * 32  # long enough, and no example
GOOD_NATS = "nats://events:p0a9f1c2e3d4b5a6978@127.0.0.1:4222"


def production_settings(**overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "env": "production",
        "nats_url": GOOD_NATS,
        "unsubscribe_secret": KEY,
        "link_secret": KEY.replace("k", "l"),
        "contact_id_secret": KEY.replace("k", "c"),
        "person_key_secret": KEY.replace("k", "p"),
        "smtp_host": "smtp.example.org",
        "smtp_starttls": True,
    }
    fields.update(overrides)
    return Settings(**fields)


def example(name: str) -> tuple[Settings, dict[str, str]]:
    """The settings of a deploy/env example, as shipped, and its VESTRY_WEB_* values."""
    env = read_env(ENV_DIR / f"{name}.env.example")
    web_fields = {f"VESTRY_WEB_{field}".upper() for field in WebSettings.model_fields}
    settings = Settings(
        **{
            key.removeprefix("VESTRY_").lower(): value
            for key, value in env.items()
            if key not in web_fields and key != "VESTRY_LOG_LEVEL"
        }
    )
    return settings, {key: value for key, value in env.items() if key in web_fields}


# The examples as shipped


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_refuses_its_example_environment(service: str) -> None:
    settings, _ = example(service)
    assert settings.env == "production"
    found = production.check(settings, service)
    assert any(p.startswith("VESTRY_NATS_URL:") and f"user '{service}'" in p for p in found)
    assert any(p.startswith(f"VESTRY_{service.upper()}_DB:") for p in found)
    assert len([p for p in found if p.startswith("VESTRY_NATS_URL")]) == 1  # once, not per node
    assert "VESTRY_PERSON_KEY_SECRET is the example value" in " ".join(found)


def test_notifications_names_every_example_key_and_credential() -> None:
    settings, _ = example("notifications")
    named = {
        problem.split(" ", 1)[0].rstrip(":")
        for problem in production.check(settings, "notifications")
    }
    assert named == {
        "VESTRY_NATS_URL",
        "VESTRY_NOTIFICATIONS_DB",
        "VESTRY_UNSUBSCRIBE_SECRET",
        "VESTRY_LINK_SECRET",
        "VESTRY_CONTACT_ID_SECRET",
        "VESTRY_PERSON_KEY_SECRET",
        "VESTRY_SMTP_PASSWORD",
        "VESTRY_NOTIFY_API_KEY",
    }  # the example's SMTP uses STARTTLS: not a problem


def test_the_site_refuses_its_example_environment() -> None:
    settings, web = example("web")
    found = production.check(
        settings, "web", keys={"VESTRY_WEB_COOKIE_SECRET": web["VESTRY_WEB_COOKIE_SECRET"]}
    )
    named = {problem.split(" ", 1)[0].rstrip(":") for problem in found}
    assert named == {
        "VESTRY_NATS_URL",
        "VESTRY_WEB_COOKIE_SECRET",
        "VESTRY_LINK_SECRET",
        "VESTRY_UNSUBSCRIBE_SECRET",
    }


def test_every_password_of_the_nats_example_counts_as_an_example() -> None:
    passwords = {
        value
        for key, value in read_env(ENV_DIR / "nats.env.example").items()
        if key.endswith("_PASSWORD")
    }
    assert passwords and passwords <= production.EXAMPLE_PASSWORDS
    for password in passwords:
        url = f"nats://someone:{password}@127.0.0.1:4222"
        assert production.nats_url_problems(url), password


@pytest.mark.parametrize(
    "password",
    ["changeme", "CHANGEME", "change-me", "Change_Me", "pchangemeevents", "x%2Dchange-me"],
)
def test_a_change_me_password_in_any_url_is_refused(password: str) -> None:
    url = f"nats://good:p0a9f1c2e3d4b5a6978@127.0.0.1:4222,nats://bad:{password}@127.0.0.1:4223"
    (problem,) = production.nats_url_problems(url)
    assert "'bad'" in problem and password not in problem  # the password is not printed
    assert production.nats_url_problems("nats://changeme@127.0.0.1:4222")  # as a token


def test_a_password_of_its_own_and_no_password_pass() -> None:
    assert production.nats_url_problems(GOOD_NATS) == []
    assert production.nats_url_problems("nats://127.0.0.1:4222") == []


# Keys


def test_a_production_configuration_of_its_own_starts() -> None:
    settings = production_settings()
    for service in (*SERVICES, *DOORS):
        keys = {"VESTRY_WEB_COOKIE_SECRET": KEY.replace("k", "w")} if service == "web" else None
        assert production.check(settings, service, keys=keys) == [], service
        production.require(settings, service, keys=keys)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "is not set"),
        ("   ", "is not set"),
        ("change-me", "is the example value"),
        ("please-change-me-before-going-live-0123456789", "is the example value"),
        ("short-but-random-9f3a", "is 21 characters long"),
    ],
)
@pytest.mark.parametrize(
    "setting", ["unsubscribe_secret", "link_secret", "contact_id_secret", "person_key_secret"]
)
def test_a_missing_example_or_short_key_is_refused(setting: str, value: str, says: str) -> None:
    settings = production_settings(**{setting: value})
    (problem,) = production.check(settings, "notifications")
    assert problem.startswith(f"VESTRY_{setting.upper()} {says}")
    assert "secrets.token_urlsafe(32)" in problem  # and how to make one


def test_each_process_checks_the_keys_it_uses() -> None:
    settings = production_settings(
        unsubscribe_secret="change-me", link_secret="change-me", contact_id_secret="change-me"
    )
    assert production.check(settings, "subscriptions") == []
    assert production.check(settings, "events") == []
    assert len(production.check(settings, "notifications")) == 3
    # The person-key secret: every service that seals and opens personal fields.
    shredding = production_settings(person_key_secret="change-me")
    for service in SERVICES:
        assert [p.split(" ")[0] for p in production.check(shredding, service)] == [
            "VESTRY_PERSON_KEY_SECRET"
        ], service
    assert production.check(shredding, "web", keys={"VESTRY_WEB_COOKIE_SECRET": KEY}) == []
    web = production.check(settings, "web", keys={"VESTRY_WEB_COOKIE_SECRET": None})
    assert [problem.split(" ")[0] for problem in web] == [
        "VESTRY_UNSUBSCRIBE_SECRET",
        "VESTRY_LINK_SECRET",
        "VESTRY_WEB_COOKIE_SECRET",
    ]


def test_every_problem_is_named_at_once() -> None:
    settings = production_settings(
        nats_url="nats://notifications:pchangemenotifications@127.0.0.1:4222",
        notifications_db="postgresql+asyncpg://vestry_notifications:change-me@db/vestry",
        unsubscribe_secret="change-me",
        link_secret="",
        contact_id_secret="tooshort",
        smtp_host="smtp.example.org",
        smtp_starttls=False,
    )
    found = production.check(settings, "notifications")
    assert [problem.split(" ")[0].rstrip(":") for problem in found] == [
        "VESTRY_NATS_URL",
        "VESTRY_NOTIFICATIONS_DB",
        "VESTRY_UNSUBSCRIBE_SECRET",
        "VESTRY_LINK_SECRET",
        "VESTRY_CONTACT_ID_SECRET",
        "VESTRY_SMTP_HOST",
    ]
    with pytest.raises(production.UnsafeForProduction) as refused:
        production.require(settings, "notifications")
    assert refused.value.problems == found
    assert all(problem in str(refused.value) for problem in found)


# Mail


@pytest.mark.parametrize("host", ["smtp.example.org", "10.0.0.5", "mail.localhost.example.org"])
def test_plain_text_smtp_to_another_host_is_refused(host: str) -> None:
    settings = production_settings(smtp_host=host, smtp_starttls=False, smtp_tls=False)
    (problem,) = production.check(settings, "notifications")
    assert problem.startswith(f"VESTRY_SMTP_HOST {host} is reached in plain text")
    assert production.check(settings, "events") == []  # only notifications sends mail


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_plain_text_smtp_to_this_machine_is_allowed(host: str) -> None:
    settings = production_settings(smtp_host=host, smtp_starttls=False, smtp_tls=False)
    assert production.check(settings, "notifications") == []


@pytest.mark.parametrize("tls", [{"smtp_starttls": True}, {"smtp_tls": True}])
def test_smtp_with_tls_is_allowed(tls: dict[str, bool]) -> None:
    settings = production_settings(**{"smtp_starttls": False, "smtp_tls": False, **tls})
    assert production.check(settings, "notifications") == []


# Development, and the start itself


def test_development_starts_on_the_examples() -> None:
    settings, _ = example("notifications")
    development = settings.model_copy(update={"env": "development"})
    assert production.problems(development, "notifications")  # the problems are there...
    assert production.check(development, "notifications") == []  # ...but do not stop it
    assert Settings.model_fields["env"].default == "development"


def test_an_unknown_environment_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="env"):
        Settings(env="prod")


def test_a_refused_start_prints_each_problem_and_exits_78() -> None:
    settings = production_settings(unsubscribe_secret="change-me", link_secret="short")
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        production.refuse_unsafe_start(settings, "notifications", out=out)
    assert exited.value.code == production.EXIT_CONFIG == 78
    printed = out.getvalue()
    assert printed.startswith("notifications: refusing to start in production")
    assert "VESTRY_UNSUBSCRIBE_SECRET is the example value" in printed
    assert "VESTRY_LINK_SECRET is 5 characters long" in printed
    production.refuse_unsafe_start(production_settings(), "notifications", out=out)  # no exit


def test_a_service_refuses_to_prepare_and_the_site_to_be_built() -> None:
    import asyncio

    from services.events.app import create_service
    from services.web.app import create_app

    service = create_service(production_settings(nats_url="nats://events:changeme@127.0.0.1:1"))
    try:
        with pytest.raises(production.UnsafeForProduction, match="VESTRY_NATS_URL"):
            asyncio.run(service.prepare())
    finally:
        asyncio.run(service.close())
    with pytest.raises(production.UnsafeForProduction, match="VESTRY_WEB_COOKIE_SECRET"):
        create_app(production_settings(), WebSettings(cookie_secret="change-me"))


@pytest.mark.parametrize("process", [*SERVICES, *DOORS])
def test_each_process_exits_non_zero_naming_the_problems(process: str, tmp_path: Path) -> None:
    """`python -m services.X` as systemd starts it, with the example environment."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("VESTRY_")  # only the example's settings
    }
    env.update(read_env(ENV_DIR / f"{process}.env.example"))
    env["VESTRY_DATA_DIR"] = str(tmp_path)
    ran = subprocess.run(
        [sys.executable, "-m", f"services.{process}"],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,  # no .env
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 78, ran.stdout + ran.stderr
    assert f"{process}: refusing to start in production" in ran.stderr
    assert "VESTRY_NATS_URL: the password of NATS user" in ran.stderr
    assert "Traceback" not in ran.stderr
    if process in ("notifications", "web"):
        assert "VESTRY_UNSUBSCRIBE_SECRET is the example value" in ran.stderr
    assert ("VESTRY_PERSON_KEY_SECRET is the example value" in ran.stderr) == (process in SERVICES)


def test_vestry_dev_runs_its_children_as_development(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VESTRY_ENV", "production")
    assert DevStack(data_dir=tmp_path).environment()["VESTRY_ENV"] == "development"


# Contact ids


def test_a_contact_id_is_keyed_not_computed_from_the_address_alone() -> None:
    email = "ann@bury.example.gov.uk"
    plain = derived_message_id("contact", email)  # what ids were: uuid5(email)
    keyed = contact_id_for(email)
    assert keyed != plain
    assert keyed == contact_id_for(email) == contact_id_for(" ANN@bury.example.gov.uk")
    assert keyed == contact_id_for(email, key=contact_id_key())
    assert contact_id_for(email, key=KEY) != keyed  # another key, another id
    assert contact_id_for("ben@bury.example.gov.uk") != keyed
    assert str(uuid.UUID(keyed)) == keyed and len(keyed) == 36  # fits the columns
