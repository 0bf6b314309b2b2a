"""The browser harness itself: Debian's Chromium, the compiled partnership CSS, axe-core,
JavaScript off, a 375-pixel phone and screenshots, on a small page served over HTTP."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from jinja2 import DictLoader, Environment, PackageLoader, PrefixLoader, select_autoescape
from playwright.async_api import Page, Response

from tests import browser as support
from tests.web.conftest import NewContext

BRAND = "rgb(14, 94, 90)"  # #0e5e5a, vestry.scss
BUTTON_GREEN = "rgb(15, 122, 82)"  # GOV.UK Frontend's green, kept for buttons
TEMPLATE_BACKGROUND = "rgb(243, 247, 247)"  # the brand's 95% tint

PAGE = """\
{%- from "govuk_frontend_jinja/components/button/macro.html" import govukButton -%}
{%- from "govuk_frontend_jinja/components/service-navigation/macro.html" import govukServiceNavigation -%}
<!DOCTYPE html>
<html lang="en" class="govuk-template">
<head>
  <meta charset="utf-8">
  <title>Browser harness – Vestry</title>
  <meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">
  <link rel="icon" href="/static/govuk/assets/images/favicon.svg" type="image/svg+xml">
  <link rel="manifest" href="/static/govuk/assets/manifest.json">
  <link rel="stylesheet" href="/static/govuk/vestry.css">
</head>
<body class="govuk-template__body">
  <script>document.body.className += ' js-enabled' + ('noModule' in HTMLScriptElement.prototype ? ' govuk-frontend-supported' : '');</script>
  <a href="#main-content" class="govuk-skip-link" data-module="govuk-skip-link">Skip to main content</a>
  <header class="vestry-header">
    <div class="govuk-width-container">
      <a href="/" class="vestry-header__name">Vestry</a>
    </div>
  </header>
  {{ govukServiceNavigation({
    "navigation": [
      {"href": "/", "text": "Home", "active": true},
      {"href": "/events", "text": "Events"}
    ]
  }) }}
  <div class="govuk-width-container">
    <main class="govuk-main-wrapper" id="main-content">
      <h1 class="govuk-heading-l">Browser harness</h1>
      <p class="govuk-body">The partnership's own styles, built from GOV.UK Frontend.</p>
      {{ govukButton({"text": "Continue"}) }}
    </main>
  </div>
  <script type="module">
    import { initAll } from "/static/govuk/govuk-frontend.min.js";
    initAll();
  </script>
</body>
</html>
"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """The page at / and services/web/static/ at /static/, served on 127.0.0.1."""
    support.require_built_assets()
    environment = Environment(
        loader=PrefixLoader(
            {
                "govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja"),
                "harness": DictLoader({"page.html": PAGE}),
            }
        ),
        autoescape=select_autoescape(),
    )
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text(environment.get_template("harness/page.html").render())
    (root / "static").symlink_to(support.STATIC, target_is_directory=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


async def _style(page: Page, selector: str, prop: str) -> str:
    return await page.eval_on_selector(
        selector, "(el, prop) => getComputedStyle(el).getPropertyValue(prop)", prop
    )


async def _load(page: Page, url: str) -> list[str]:
    """Load the page; return the requests that failed or answered 400 and above."""
    failures: list[str] = []

    def check(response: Response) -> None:
        if response.status >= 400:
            failures.append(f"{response.url}: {response.status}")

    page.on("requestfailed", lambda request: failures.append(f"{request.url}: failed"))
    page.on("response", check)
    await page.goto(url, wait_until="load")
    return failures


async def test_desktop_page_is_the_partnerships_not_govuks(page: Page, site: str) -> None:
    assert await _load(page, site) == []

    # GOV.UK Frontend sets no font on <body> itself, only through its classes.
    assert "GDS Transport" not in await _style(page, "body", "font-family")
    for selector in (".govuk-body", ".govuk-heading-l", ".govuk-button", ".vestry-header"):
        font = await _style(page, selector, "font-family")
        assert font.startswith("system-ui"), (selector, font)
        assert "GDS Transport" not in font
    # No @font-face at all: nothing for the page to download.
    assert await page.evaluate("document.fonts.size") == 0
    assert await _style(page, ".govuk-button", "background-color") == BUTTON_GREEN
    assert await _style(page, ".vestry-header", "background-color") == BRAND
    assert await _style(page, ".vestry-header__name", "color") == "rgb(255, 255, 255)"
    assert await _style(page, "html", "background-color") == TEMPLATE_BACKGROUND

    # GOV.UK Frontend's JavaScript ran and initialised the button.
    await page.wait_for_selector(".govuk-button[data-govuk-button-init]", state="attached")
    assert "govuk-frontend-supported" in (await page.get_attribute("body", "class") or "")

    await support.assert_no_axe_violations(page)


async def test_page_fits_a_375_pixel_phone(new_context: NewContext, site: str) -> None:
    context = await new_context(mobile=True)
    page = await context.new_page()
    assert await _load(page, site) == []
    assert await page.evaluate("window.innerWidth") == 375
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    # With JavaScript, the two navigation links fold into a menu button on a phone.
    await page.get_by_role("button", name="Menu").wait_for(state="visible")
    assert await page.get_by_role("link", name="Events").is_hidden()
    await support.assert_no_axe_violations(page)


async def test_page_works_without_javascript(new_context: NewContext, site: str) -> None:
    context = await new_context(mobile=True, javascript=False)
    page = await context.new_page()
    assert await _load(page, site) == []
    body_class = await page.get_attribute("body", "class") or ""
    assert "js-enabled" not in body_class
    assert await page.locator("[data-govuk-button-init]").count() == 0
    # Everything is still there and styled: the links show, the menu button stays hidden.
    assert await page.get_by_role("button", name="Continue").is_visible()
    assert await _style(page, ".govuk-button", "background-color") == BUTTON_GREEN
    assert await page.get_by_role("link", name="Events").is_visible()
    assert await page.get_by_role("button", name="Menu").count() == 0
    await support.assert_no_axe_violations(page)


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
async def test_axe_failures_name_the_rule_and_the_element(
    new_context: NewContext, javascript: bool
) -> None:
    page = await (await new_context(javascript=javascript)).new_page()
    await page.set_content(
        '<!DOCTYPE html><html lang="en"><head><title>Broken</title></head>'
        '<body><main><h1>Broken</h1><img id="no-alt" src="data:,"></main></body></html>'
    )
    violations = await support.axe_violations(page)
    assert [v["id"] for v in violations] == ["image-alt"]
    with pytest.raises(pytest.fail.Exception) as failure:
        await support.assert_no_axe_violations(page)
    assert "image-alt" in str(failure.value)
    assert "#no-alt" in str(failure.value)


async def test_screenshot_is_a_full_page_png(page: Page, site: str, tmp_path: Path) -> None:
    await page.set_viewport_size({"width": 800, "height": 200})
    await _load(page, site)
    path = await support.screenshot(page, "harness", directory=tmp_path)
    assert path == tmp_path / "harness.png"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 800
    assert height > 200  # the whole page, not the 200-pixel viewport


def test_missing_chromium_skips_locally_and_fails_on_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(support, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="make browser"):
        support.require_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="Chromium is needed on CI"):
        support.require_chromium()
