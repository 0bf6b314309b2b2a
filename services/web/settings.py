"""The web service's own settings, read from ``VESTRY_WEB_*`` at start-up."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WebSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VESTRY_WEB_", env_file=".env", extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address the site listens on.")
    port: int = Field(default=8000, description="Port the site listens on.")
    secure_cookies: bool = Field(
        default=True,
        description="Mark cookies Secure (sent over HTTPS only); `vestry dev` turns it off.",
    )
    cookie_secret: str = Field(
        default="change-me", description="Key signing the site's CSRF tokens (HMAC-SHA256)."
    )
    command_timeout_s: float = Field(
        default=5.0, gt=0, description="How long a page waits for a service's answer."
    )
    bookings_per_minute: int = Field(
        default=20, ge=1, description="Booking forms one client may post in a minute."
    )
    lookups_per_minute: int = Field(
        default=10,
        ge=1,
        description="Wrong booking references one client may try in a minute before 429.",
    )
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Proxies whose X-Forwarded-For and -Proto are believed (comma separated).",
    )

    # The back office (/office/): its store, staff sessions and sign-in lockout.
    db: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the web service's own store (staff accounts and "
        "sessions only); a SQLite file in the data directory if unset.",
    )
    staff_idle_timeout_min: float = Field(
        default=30, gt=0, description="A staff session unused this many minutes ends."
    )
    staff_session_hours: float = Field(
        default=12, gt=0, description="A staff session ends this many hours after sign-in."
    )
    sign_ins_per_minute: int = Field(
        default=20, ge=1, description="Sign-in attempts one client may make in a minute."
    )
    lockout_after: int = Field(
        default=10,
        ge=1,
        description="Wrong passwords in a row for one address before it is locked.",
    )
    lockout_minutes: float = Field(
        default=15,
        gt=0,
        description="The first lock's length; each wrong password after it doubles it "
        "(at most a day).",
    )

    # The channel-shift report: what one booking costs the partnership through each channel.
    unit_cost_web_pence: int = Field(
        default=39, ge=0, description="What a booking made on the site costs, in pence."
    )
    unit_cost_phone_pence: int = Field(
        default=321, ge=0, description="What a booking taken by phone costs, in pence."
    )
    unit_cost_in_person_pence: int = Field(
        default=823, ge=0, description="What a booking taken face to face costs, in pence."
    )
