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
