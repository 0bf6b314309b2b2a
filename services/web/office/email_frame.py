"""The email previewed in a frame, styled as it will arrive.

A ``srcdoc`` frame takes the policy of the page around it, and the site's allows no
inline style, so an email's own styles (its layout's ``style`` attributes and any
``<style>`` element) would be dropped. The composer's page allows exactly those styles,
by their hashes, and no others: the page itself has no inline style to be let through.
"""

from __future__ import annotations

import base64
import hashlib
from html.parser import HTMLParser

from services.web.security import content_security_policy


class _Styles(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.extend(value for name, value in attrs if name == "style" and value)
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style and data:
            self.found.append(data)


def inline_styles(html: str) -> list[str]:
    """Each ``style`` attribute's value and each ``<style>`` element's text, in order."""
    parser = _Styles()
    parser.feed(html)
    parser.close()
    return parser.found


def _hash(style: str) -> str:
    digest = hashlib.sha256(style.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def policy_for(*htmls: str) -> str | None:
    """The site's policy, with the inline styles of ``htmls`` allowed by their hashes;
    None when they have none (the site's own policy stands)."""
    hashes = sorted({_hash(style) for html in htmls for style in inline_styles(html)})
    if not hashes:
        return None
    # 'unsafe-hashes' lets a hash allow a style attribute, not only a <style> element.
    return content_security_policy(styles=("'unsafe-hashes'", *hashes))
