"""The events service's own settings, read from ``VESTRY_EVENTS_*`` at start-up."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.events.domain import DEFAULT_OFFSETS_H


class EventsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VESTRY_EVENTS_", env_file=".env", extra="ignore")

    reminder_offsets_h: list[int] = Field(
        default=list(DEFAULT_OFFSETS_H),
        description="Hours before the start at which each confirmed booker is reminded.",
    )
    timekeeper_poll_s: float = Field(
        default=15.0, description="How often due reminders and ended events are looked for."
    )
    check_in_opens_h: float = Field(
        default=2.0, description="How long before the start check-in opens, in hours."
    )
    booking_batch: int = Field(
        default=256,
        ge=1,
        description="Most bookings answered in one transaction (a rush is taken a sixth of "
        "the queue at a time, in order of arrival, up to this many): it bounds how long "
        "one batch holds the event's lock.",
    )
    phone_region: str = Field(
        default="GB", description="Region of phone numbers given without a country code."
    )
    feed_url: str | None = Field(
        default=None,
        description="Public address of the event listings, the feeds' id and links; "
        "unset: VESTRY_PUBLIC_URL/events, the public site's programme.",
    )
    feed_title: str = Field(default="Partnership events", description="Title of the feeds.")
    booking_retention_days: int = Field(
        default=730,
        ge=0,
        description="Days after an event ends that its bookers' names, emails and phones are "
        "kept; then they are redacted, as an erasure would (counts, prices and attendance "
        "stay for reports). 0: kept until a person asks to be erased.",
    )
