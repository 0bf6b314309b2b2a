"""Browser testing support: Playwright driving Debian's Chromium, axe-core, screenshots.

Playwright for Python drives the system browser at /usr/bin/chromium (`make browser`
installs it with apt-get); nothing is downloaded, and `playwright install` must never run.
The fixtures that use this live in tests/web/conftest.py.

Findings that shaped it (Playwright 1.65, Chromium 156, axe-core 4.12.1 here):
- Each test launches its own browser. A session-wide one would live on pytest-asyncio's
  session loop, and every test and async fixture using it would have to run on that loop
  too; a function-scoped async fixture (the project's default) then runs on a different
  loop from its test, and a server or connection it started there would not be served.
  A launch costs about 0.8 s all told (driver 0.4 s, Chromium 0.2-0.6 s, close 0.1 s).
- With JavaScript off (`java_script_enabled=False`) Chromium runs `page.evaluate`, but no
  timer, microtask or promise callback ever fires, so axe-core never finishes. For such a
  page `axe_violations` audits a copy of its DOM in a JavaScript-on page whose scripts are
  blocked by a Content-Security-Policy (see `_scriptless_copy`).
"""

from __future__ import annotations

import asyncio
import os
import re
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium keeps trying hosts this machine's closed network refuses.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
MOBILE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 900}
SCREENSHOTS = REPO / "docs" / "screenshots"
STATIC = REPO / "services" / "web" / "static"
BUILT_CSS = STATIC / "govuk" / "vestry.css"
# WCAG 2.0, 2.1 and 2.2 at levels A and AA (axe-core has no rule tagged wcag22a yet; it is
# listed so that one added later runs).
WCAG_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa")
DEFAULT_TIMEOUT_MS = 15_000
AXE_TIMEOUT_S = 60.0

_scriptless_contexts: weakref.WeakSet[BrowserContext] = weakref.WeakSet()


def require_chromium() -> None:
    """Skip the calling test when Chromium is missing; on CI (CI=true) fail instead, since
    a skip there would hide that no browser test ran."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return
    message = f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Chromium is needed on CI: {message}", pytrace=False)
    pytest.skip(message)


def require_built_assets() -> None:
    """Skip (fail on CI) when services/web/static/govuk/ has not been built."""
    if BUILT_CSS.is_file():
        return
    message = f"{BUILT_CSS.relative_to(REPO)} is missing: run `make assets`"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"The web assets are needed on CI: {message}", pytrace=False)
    pytest.skip(message)


@asynccontextmanager
async def launch_chromium() -> AsyncIterator[Browser]:
    """A headless Chromium from /usr/bin/chromium, closed (with its Playwright driver) on exit."""
    require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


async def new_context(
    browser: Browser, *, mobile: bool = False, javascript: bool = True, **options: Any
) -> BrowserContext:
    """A fresh browser context: desktop (1280 px) or mobile (375 px wide, touch, a phone's
    device scale), with JavaScript on or off. Other keyword arguments go to
    `Browser.new_context` (for example `base_url`, `locale`, `color_scheme`)."""
    if mobile:
        settings: dict[str, Any] = {
            "viewport": MOBILE,
            "device_scale_factor": 2,
            "is_mobile": True,
            "has_touch": True,
        }
    else:
        settings = {"viewport": DESKTOP}
    settings.update(options)
    context = await browser.new_context(java_script_enabled=javascript, **settings)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    if not javascript:
        _scriptless_contexts.add(context)
    return context


async def _scripts_run(page: Page) -> bool:
    """Whether the page runs callbacks; false with JavaScript off (see the module notes)."""
    if page.context in _scriptless_contexts:
        return False
    try:
        async with asyncio.timeout(2.0):
            return bool(await page.evaluate("new Promise(r => setTimeout(() => r(true), 0))"))
    except TimeoutError:
        return False


@asynccontextmanager
async def _scriptless_copy(page: Page) -> AsyncIterator[Page]:
    """The page's current DOM, at its URL and viewport, in a JavaScript-on context whose
    page scripts a Content-Security-Policy blocks: axe-core can run there and sees what a
    person without JavaScript sees. Stylesheets and images load from the page's server.
    (One difference: children of <noscript> become text in the copy.)"""
    browser = page.context.browser
    assert browser is not None, "a page from a persistent context cannot be copied"
    html = await page.content()
    url = page.url if page.url.startswith(("http://", "https://")) else "http://127.0.0.1/"
    copy_context = await browser.new_context(viewport=page.viewport_size)
    try:
        copy = await copy_context.new_page()

        async def serve_copy(route: Route) -> None:
            await route.fulfill(
                status=200,
                content_type="text/html; charset=utf-8",
                body=html,
                headers={"Content-Security-Policy": "script-src 'none'"},
            )

        await copy.route(url, serve_copy)
        await copy.goto(url)
        yield copy
    finally:
        await copy_context.close()


async def axe_violations(page: Page, tags: tuple[str, ...] = WCAG_TAGS) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now, for WCAG 2.0/2.1/2.2 A and AA.
    Each is axe's own dict: `id`, `impact`, `help`, `helpUrl`, `nodes` (with `target`)."""
    options = {"runOnly": {"type": "tag", "values": list(tags)}, "resultTypes": ["violations"]}
    async with asyncio.timeout(AXE_TIMEOUT_S):
        if await _scripts_run(page):
            results = await Axe().run(page, options=options)
        else:
            async with _scriptless_copy(page) as copy:
                results = await Axe().run(copy, options=options)
    return list(results.response["violations"])


def format_violations(violations: list[dict[str, Any]]) -> str:
    lines = [f"{len(violations)} accessibility violation(s) (axe-core):"]
    for violation in violations:
        lines.append(
            f"- {violation['id']} ({violation.get('impact')}): {violation['help']}"
            f" <{violation.get('helpUrl', '')}>"
        )
        for node in violation.get("nodes", []):
            target = " ".join(str(part) for part in node.get("target", []))
            lines.append(f"    at {target}: {node.get('html', '').strip()[:200]}")
            summary = node.get("failureSummary")
            if summary:
                lines.extend(f"      {line}" for line in summary.strip().splitlines())
    return "\n".join(lines)


async def assert_no_axe_violations(page: Page, tags: tuple[str, ...] = WCAG_TAGS) -> None:
    """Fail, listing each violation's id, help text and the elements it was found on."""
    violations = await axe_violations(page, tags)
    if violations:
        report = format_violations(violations)
        print(report)
        pytest.fail(f"{page.url}\n{report}", pytrace=False)


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


async def screenshot(page: Page, name: str, directory: Path = SCREENSHOTS) -> Path:
    """A full-page PNG of the page at docs/screenshots/NAME.png (or in `directory`)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"screenshot name {name!r}: letters, digits, '.', '_' and '-' only")
    path = directory / f"{name.removesuffix('.png')}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(path), full_page=True)
    return path
