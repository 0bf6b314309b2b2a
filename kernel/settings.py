"""Settings, read from ``VESTRY_*`` environment variables at start-up."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """One set of settings for the whole stack; each service reads what it needs."""

    model_config = SettingsConfigDict(env_prefix="VESTRY_", env_file=".env", extra="ignore")

    env: Literal["development", "production"] = Field(
        default="development",
        description="production: a service refuses to start on an example password or key, "
        "a short key, or plain-text SMTP to another host (kernel/production.py).",
    )
    data_dir: Path = Field(
        default=Path("var"), description="Where SQLite files, JetStream and captures live."
    )
    nats_url: str = Field(
        default="nats://127.0.0.1:4222", description="NATS server URL(s), comma separated."
    )
    nats_inbox_prefix: str | None = Field(
        default=None,
        description="Prefix of this process's reply subjects (nats-py inbox_prefix). Unset: "
        "_INBOX_<user> when VESTRY_NATS_URL names a user (the only inbox that user may "
        "subscribe to, deploy/nats/accounts.conf), else nats-py's _INBOX.",
    )
    subscriptions_db: str | None = Field(
        default=None, description="SQLAlchemy URL of the subscriptions store."
    )
    events_db: str | None = Field(default=None, description="SQLAlchemy URL of the events store.")
    notifications_db: str | None = Field(
        default=None, description="SQLAlchemy URL of the notifications store."
    )

    stream_replicas: int = Field(
        default=1, ge=1, le=5, description="Copies of each stream: 3 on a three-node cluster."
    )
    duplicate_window_s: float = Field(default=24 * 3600, description="JetStream dedupe window.")
    max_deliver: int = Field(
        default=5, description="Attempts at a fact before it is dead-lettered."
    )
    retry_backoff_s: list[float] = Field(
        default=[1.0, 5.0, 30.0, 120.0], description="Delay before each retry of a failed fact."
    )
    ack_wait_s: float = Field(
        default=30.0, description="How long a delivered fact may stay unacknowledged."
    )
    fetch_batch: int = Field(default=200, description="Facts fetched from JetStream at once.")
    relay_batch: int = Field(default=500, description="Outbox rows published at once.")
    outbox_retention_s: float | None = Field(
        default=2 * 24 * 3600,
        description="Seconds a published outbox row is kept before it is deleted; longer "
        "than the JetStream duplicate window. None keeps them.",
    )
    inbox_retention_s: float | None = Field(
        default=None,
        description="Seconds the record of a handled message is kept; a replay reaching "
        "further back applies those messages again. None (the default) keeps them.",
    )
    command_answer_retention_s: float | None = Field(
        default=24 * 3600,
        description="Seconds a command's answer is kept by its envelope id, so that a client "
        "retrying with the same id gets the first answer and changes nothing; after it, the "
        "same id runs as a new command. None keeps them.",
    )
    relay_poll_s: float = Field(
        default=0.5, description="How often the relay looks for unsent facts."
    )

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None
    mail_from: str = "Vestry <no-reply@vestry.invalid>"
    mail_reply_to: str | None = None

    # Notifications: SMS, templates, pacing and the unsubscribe link.
    sms_provider: str = Field(
        default="capture",
        description="capture (files under the data directory) or notify (GOV.UK Notify).",
    )
    notify_api_key: str | None = Field(
        default=None, description="GOV.UK Notify API key: <name>-<service id>-<secret key>."
    )
    notify_base_url: str = Field(
        default="https://api.notifications.service.gov.uk", description="GOV.UK Notify API."
    )
    notify_sms_template_id: str | None = Field(
        default=None,
        description="Notify template holding only ((body)): the text Vestry renders goes in it.",
    )
    sms_segment_limit: int = Field(
        default=2, ge=1, description="Most segments one SMS template may take."
    )
    quiet_hours: str | None = Field(
        default="21:00-08:00",
        description="Europe/London hours when non-urgent SMS wait; empty for none.",
    )
    email_rate_per_s: float = Field(
        default=50.0, gt=0, description="Most emails handed to the SMTP server per second."
    )
    sms_rate_per_s: float = Field(
        default=10.0, gt=0, description="Most SMS handed to the gateway per second."
    )
    delivery_retry_s: list[float] = Field(
        default=[30.0, 120.0, 600.0, 1800.0],
        description="Delay before each retry of a transiently failed delivery.",
    )
    send_concurrency: int = Field(
        default=20, ge=1, description="Deliveries in flight at once per replica."
    )
    delivery_claim_lease_s: float = Field(
        default=300.0,
        gt=0,
        description="How long a replica holds the rows it is sending; a crashed replica's "
        "rows are due again after it.",
    )
    sender_poll_s: float = Field(
        default=0.1, gt=0, description="How often an idle sender looks for due deliveries."
    )
    templates_dir: Path | None = Field(
        default=None, description="Operator templates that override the shipped ones."
    )
    partnership_name: str = Field(
        default="North West Partnership", description="Who the messages are from."
    )
    public_url: str = Field(
        default="https://vestry.invalid", description="Base of links in messages."
    )
    unsubscribe_secret: str = Field(
        default="change-me",
        description="Key signing unsubscribe links (HMAC-SHA256); the web service answers them.",
    )
    link_secret: str = Field(
        default="change-me",
        description="Key signing the link in booking messages that opens the booker's own "
        "page on the public site (HMAC-SHA256); the web service checks it with the same key.",
    )
    contact_id_secret: str = Field(
        default="change-me",
        description="Key from which notifications derives each person's contact id "
        "(HMAC-SHA256 of their address), so an address alone names no one in a link. "
        "Notifications only; a new key gives people first seen after it other ids.",
    )

    # Card payments through GOV.UK Pay: subscriptions calls the API, the site takes its
    # webhooks. Without an API key, invoices are paid by the instructions printed on them.
    pay_api_url: str = Field(
        default="https://publicapi.payments.service.gov.uk",
        description="GOV.UK Pay's API (subscriptions); `vestry dev` points it at a stand-in.",
    )
    pay_api_key: str | None = Field(
        default=None,
        description="GOV.UK Pay API key (Bearer). Unset: no card payments, the pay page "
        "shows how else to pay.",
    )
    pay_card_origin: str = Field(
        default="https://www.payments.service.gov.uk",
        description="Where GOV.UK Pay's card pages are (the origin of each payment's "
        "next_url): the only place the site's pay form may send a person.",
    )
    pay_webhook_secret: str | None = Field(
        default=None,
        description="GOV.UK Pay webhook signing secret (the site checks each webhook's "
        "Pay-Signature with it). Unset: webhooks are refused; returns still record payments.",
    )

    person_key_secret: str = Field(
        default="change-me",
        description="Key from which every service derives a person's id in the shared key "
        "store (HMAC-SHA256 of their address), under which their key is found: the same in "
        "events, subscriptions, notifications and the CLI. A new key loses the old keys.",
    )

    def inbox_prefix(self) -> str:
        """The prefix this process's NATS replies come back under (``inbox_prefix``)."""
        return inbox_prefix(self.nats_url, self.nats_inbox_prefix)

    def database_url(self, service: str) -> str:
        """The service's store: its own URL if set, else a SQLite file in the data directory."""
        explicit = getattr(self, f"{service}_db", None)
        if explicit:
            return explicit
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{service}.sqlite3').resolve()}"

    def retry_delay(self, delivered: int) -> float:
        """Delay before the next attempt, after ``delivered`` attempts."""
        steps = self.retry_backoff_s or [1.0]
        return steps[min(max(delivered, 1), len(steps)) - 1]


DEFAULT_INBOX_PREFIX = "_INBOX"
_USER = re.compile(r"[A-Za-z0-9_-]+")


def inbox_prefix(nats_url: str, explicit: str | None = None) -> str:
    """Where a client's replies come back: ``explicit`` if given, else ``_INBOX_<user>`` for
    the first user ``nats_url`` names, else nats-py's ``_INBOX``.

    Each production NATS user may subscribe only to its own ``_INBOX_<user>.>``, so
    nobody reads another's replies: JetStream API answers, publish acks, pulled
    facts, command replies (deploy/nats/accounts.conf).
    """
    if explicit:
        return explicit
    for url in filter(None, (part.strip() for part in nats_url.split(","))):
        parts = urlsplit(url)
        user = unquote(parts.username or "")
        # user:password only: in nats://TOKEN@host the "user" is a secret.
        if parts.password is not None and _USER.fullmatch(user):
            return f"{DEFAULT_INBOX_PREFIX}_{user}"
    return DEFAULT_INBOX_PREFIX
