"""The composer's policy: an email's own inline styles allowed by their hashes, no more."""

from __future__ import annotations

import base64
import hashlib

from services.web.office.email_frame import inline_styles, policy_for
from services.web.security import CONTENT_SECURITY_POLICY

EMAIL = (
    "<html><head><style>p { margin: 0 }</style></head>"
    '<body style="font-family: Arial, sans-serif"><p style="color: #555">Hi &amp; bye</p>'
    '<p style="">nothing</p></body></html>'
)


def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_every_style_attribute_and_element_is_found_as_written() -> None:
    assert inline_styles(EMAIL) == [
        "p { margin: 0 }",
        "font-family: Arial, sans-serif",
        "color: #555",
    ]


def test_the_policy_allows_those_styles_by_hash_and_keeps_everything_else() -> None:
    policy = policy_for(EMAIL)
    assert policy is not None
    directives = dict(part.split(" ", 1) for part in policy.split("; "))
    sources = directives.pop("style-src").split()
    assert sources[:2] == ["'self'", "'unsafe-hashes'"]
    assert set(sources[2:]) == {
        sha256("p { margin: 0 }"),
        sha256("font-family: Arial, sans-serif"),
        sha256("color: #555"),
    }
    site = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))
    assert site.pop("style-src") == "'self'"
    assert directives == site  # script, frames, forms: as strict as the rest of the site
    assert "unsafe-inline" not in policy


def test_an_email_without_inline_styles_leaves_the_sites_policy() -> None:
    assert policy_for("<p>plain</p>", "") is None
