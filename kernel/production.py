"""What a process refuses to start on in production (``VESTRY_ENV=production``): a
password or key from the examples, a signing key that is missing or short, mail
sent in plain text to another host.

The examples in ``deploy/env`` start a stack without complaint, so a copy whose
values were never replaced would run: anyone who has read the examples could
then sign an unsubscribe link or a booking link, or log in to NATS as a
service. ``problems`` names each such setting (a pure function, so tests ask it
directly); each process asks it as it starts and, in production, stops with
the list and exit status 78 (EX_CONFIG) before it touches a store or NATS.
`vestry dev` always runs its children as development.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Mapping
from typing import TextIO
from urllib.parse import unquote, urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from kernel.settings import Settings

# Exit status of a refused start: sysexits' EX_CONFIG.
EXIT_CONFIG = 78

# Signing keys are HMAC-SHA256 keys: at least this many characters, e.g.
# python3 -c 'import secrets; print(secrets.token_urlsafe(32))' (43 characters).
MIN_KEY_LENGTH = 32

# Every password in deploy/env/nats.env.example (a unit test keeps this in step).
EXAMPLE_PASSWORDS = frozenset(
    {
        "pchangemeroute",
        "pchangemesubscriptions",
        "pchangemeevents",
        "pchangemenotifications",
        "pchangemeweb",
        "pchangemeoperator",
        "pchangemesys",
    }
)

# The keys (settings of kernel/settings.py) each process signs or checks links with.
KEYS_OF: dict[str, tuple[str, ...]] = {
    "subscriptions": ("person_key_secret",),
    "events": ("person_key_secret",),
    "notifications": (
        "unsubscribe_secret",
        "link_secret",
        "contact_id_secret",
        "person_key_secret",
    ),
    "web": ("unsubscribe_secret", "link_secret"),
}

_MAKE_A_KEY = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
_MAKE_A_PASSWORD = "python3 -c 'import secrets; print(\"p\" + secrets.token_hex(24))'"


class UnsafeForProduction(RuntimeError):
    """A production start refused, with every problem found."""

    def __init__(self, service: str, found: list[str]) -> None:
        self.service = service
        self.problems = found
        super().__init__(refusal(service, found))


def is_example(value: str) -> bool:
    """A value from the examples: one of their passwords, or any "change me"."""
    squashed = value.lower().replace("-", "").replace("_", "").replace(" ", "")
    return "changeme" in squashed or value in EXAMPLE_PASSWORDS


def _variable(setting: str) -> str:
    return f"VESTRY_{setting.upper()}"


def key_problem(variable: str, value: str | None) -> str | None:
    """What is wrong with a signing key, if anything: missing, an example, or short."""
    if value is None or not value.strip():
        return f"{variable} is not set: set a random key of its own ({_MAKE_A_KEY})"
    if is_example(value):
        return f"{variable} is the example value: replace it with a random key ({_MAKE_A_KEY})"
    if len(value) < MIN_KEY_LENGTH:
        return (
            f"{variable} is {len(value)} characters long; a signing key needs at least "
            f"{MIN_KEY_LENGTH} random ones ({_MAKE_A_KEY})"
        )
    return None


def nats_url_problems(nats_url: str) -> list[str]:
    """An example password (or user) in any of the URLs, named once per user."""
    found: list[str] = []
    for url in filter(None, (part.strip() for part in nats_url.split(","))):
        parts = urlsplit(url)
        user = unquote(parts.username or "")
        password = unquote(parts.password or "")
        if password:
            if not is_example(password):
                continue
            problem = (
                f"VESTRY_NATS_URL: the password of NATS user {user!r} is an example one "
                f"(deploy/env/nats.env.example): give the user its own password in nats.env "
                f"and in this URL ({_MAKE_A_PASSWORD})"
            )
        elif user and is_example(user):  # nats://TOKEN@host
            problem = f"VESTRY_NATS_URL: the NATS token is an example one ({_MAKE_A_PASSWORD})"
        else:
            continue
        if problem not in found:
            found.append(problem)
    return found


def store_url_problem(service: str, url: str | None) -> str | None:
    """An example password in the service's database URL."""
    if not url:
        return None
    try:
        password = make_url(url).password
    except ArgumentError:
        return None
    if password is not None and is_example(str(password)):
        return (
            f"{_variable(service + '_db')}: the database password is the example one: "
            "give the database role a password of its own"
        )
    return None


def is_local(host: str) -> bool:
    """This machine: loopback addresses and localhost."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def mail_problems(settings: Settings) -> list[str]:
    """Plain-text SMTP to another host, and example mail and SMS credentials."""
    found: list[str] = []
    if not (settings.smtp_starttls or settings.smtp_tls) and not is_local(settings.smtp_host):
        found.append(
            f"VESTRY_SMTP_HOST {settings.smtp_host} is reached in plain text (addresses, "
            "unsubscribe and booking links and the SMTP password cross the network readable): "
            "set VESTRY_SMTP_STARTTLS=true (port 587) or VESTRY_SMTP_TLS=true (port 465)"
        )
    if settings.smtp_password and is_example(settings.smtp_password):
        found.append("VESTRY_SMTP_PASSWORD is the example value: set the relay's password")
    if (
        settings.sms_provider == "notify"
        and settings.notify_api_key
        and is_example(settings.notify_api_key)
    ):
        found.append("VESTRY_NOTIFY_API_KEY is the example value: set the service's Notify key")
    return found


def pay_problems(settings: Settings, service: str) -> list[str]:
    """Card payments: an example GOV.UK Pay API key, or one sent in plain text to another
    host (subscriptions); an example or short webhook signing secret (the site). Neither
    is required: without them there are no card payments, or no webhooks."""
    found: list[str] = []
    if service == "subscriptions" and settings.pay_api_key:
        if is_example(settings.pay_api_key):
            found.append(
                "VESTRY_PAY_API_KEY is the example value: set the service's GOV.UK Pay key"
            )
        api = urlsplit(settings.pay_api_url)
        if api.scheme != "https" and not is_local(api.hostname or ""):
            found.append(
                f"VESTRY_PAY_API_URL {settings.pay_api_url} is reached in plain text (the API "
                "key crosses the network readable): use https"
            )
    if service == "web" and settings.pay_webhook_secret is not None:
        problem = key_problem("VESTRY_PAY_WEBHOOK_SECRET", settings.pay_webhook_secret)
        if problem:
            found.append(problem)
    return found


def problems(
    settings: Settings, service: str, *, keys: Mapping[str, str | None] | None = None
) -> list[str]:
    """Everything that would make ``service`` unsafe to run in production, whatever
    ``settings.env`` says; ``keys`` adds the process's own keys (variable: value)."""
    found = nats_url_problems(settings.nats_url)
    store = store_url_problem(service, getattr(settings, f"{service}_db", None))
    if store:
        found.append(store)
    named = {_variable(setting): getattr(settings, setting) for setting in KEYS_OF.get(service, ())}
    for variable, value in {**named, **(keys or {})}.items():
        problem = key_problem(variable, value)
        if problem:
            found.append(problem)
    if service == "notifications":
        found += mail_problems(settings)
    found += pay_problems(settings, service)
    return found


def check(
    settings: Settings, service: str, *, keys: Mapping[str, str | None] | None = None
) -> list[str]:
    """The problems that stop ``service`` starting: none outside production."""
    if settings.env != "production":
        return []
    return problems(settings, service, keys=keys)


def refusal(service: str, found: list[str]) -> str:
    lines = [f"{service}: refusing to start in production (VESTRY_ENV=production):"]
    lines += [f"  - {problem}" for problem in found]
    return "\n".join(lines)


def require(
    settings: Settings, service: str, *, keys: Mapping[str, str | None] | None = None
) -> None:
    """Raise ``UnsafeForProduction`` if ``service`` may not start with these settings."""
    found = check(settings, service, keys=keys)
    if found:
        raise UnsafeForProduction(service, found)


def refuse_unsafe_start(
    settings: Settings,
    service: str,
    *,
    keys: Mapping[str, str | None] | None = None,
    out: TextIO | None = None,
) -> None:
    """At a process's start: print every problem and exit 78 if there are any."""
    found = check(settings, service, keys=keys)
    if found:
        print(refusal(service, found), file=out or sys.stderr, flush=True)
        raise SystemExit(EXIT_CONFIG)
