"""Browser fixtures for the web service's tests: Debian's Chromium through Playwright.

- `browser`: a headless Chromium, launched for each test (see tests/browser.py for why not
  one per session). Skips when /usr/bin/chromium is missing; fails on CI.
- `new_context`: makes contexts, closed after the test:
  `await new_context()` (desktop, 1280 px), `await new_context(mobile=True)` (375 px),
  `await new_context(javascript=False)`, plus any `Browser.new_context` option.
- `context` and `page`: a desktop context with JavaScript on, and a page in it.

Helpers to use with them are in tests.browser: `assert_no_axe_violations(page)`,
`axe_violations(page)`, `screenshot(page, name)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page

from tests import browser as support

NewContext = Callable[..., Awaitable[BrowserContext]]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with support.launch_chromium() as launched:
        yield launched


@pytest.fixture
async def new_context(browser: Browser) -> AsyncIterator[NewContext]:
    made: list[BrowserContext] = []

    async def make(*, mobile: bool = False, javascript: bool = True, **options: Any):
        context = await support.new_context(
            browser, mobile=mobile, javascript=javascript, **options
        )
        made.append(context)
        return context

    yield make
    for context in made:
        await context.close()


@pytest.fixture
async def context(new_context: NewContext) -> BrowserContext:
    return await new_context()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()
