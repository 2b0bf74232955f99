"""The web page in a real browser: Debian's chromium driven by playwright (never a downloaded browser).

Skips in one line without /usr/bin/chromium or playwright; under CI=true that skip fails instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.conftest import ProcessGroup
from tests.web import web_collector

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"


def _missing() -> str:
    """Why the browser test cannot run here, or ""."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} missing (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright missing (pip install -e '.[test]')"
    return ""


@pytest.fixture
def browser_page():
    """A chromium page through playwright; skips (fails under CI=true) without chromium or playwright."""
    missing = _missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing}; CI=true does not skip")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": 1200, "height": 900})
        finally:
            browser.close()


@pytest.mark.timeout(90)
def test_the_page_shows_the_alias_and_the_live_nodes(procs: ProcessGroup, tmp_path: Path, browser_page) -> None:
    from playwright.sync_api import expect

    web = web_collector(procs, tmp_path, "--alias", "browser-lab")
    procs.agent(web.process.agents, "web-b1")
    page = browser_page
    page.goto(web.url)
    expect(page.locator("#alias")).to_have_text("browser-lab", timeout=15_000)
    page.locator("#nodes tbody tr", has_text="web-b1").wait_for(timeout=20_000)
    page.locator("#nodes tbody tr", has_text="live").wait_for(timeout=20_000)
    page.locator("#live", has_text="live").wait_for(timeout=10_000)
    page.locator("#modules tbody tr", has_text="systemstats").wait_for(timeout=10_000)  # polled after the stats
    text = page.inner_text("body")
    assert "browser-lab" in text and "web-b1" in text and "systemstats" in text and "lab.toml" in text
    shot = tmp_path / "web.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


@pytest.mark.timeout(90)
def test_an_edit_in_the_page_is_saved_with_the_token(procs: ProcessGroup, tmp_path: Path, browser_page) -> None:
    from playwright.sync_api import expect

    web = web_collector(procs, tmp_path)
    page = browser_page
    page.goto(web.url)
    expect(page.locator("#config-text")).to_have_value(re.compile("node_timeout"), timeout=15_000)
    page.select_option("#config-name", "lab.toml")
    expect(page.locator("#config-text")).to_have_value(re.compile("bench"), timeout=15_000)
    page.fill("#config-text", "[lab]\nname = 'edited'\n")
    page.click("#config-save")
    page.locator("#config-result", has_text="401").wait_for(timeout=10_000)
    page.fill("#config-token", web.token)
    page.fill("#config-text", "[lab\n")
    page.click("#config-save")
    page.locator("#config-result", has_text="400").wait_for(timeout=10_000)
    assert web.files["lab.toml"].read_text() == '[lab]\nname = "bench"\n'
    page.fill("#config-text", "[lab]\nname = 'edited'\n")
    page.click("#config-save")
    page.locator("#config-result", has_text="saved").wait_for(timeout=10_000)
    assert web.files["lab.toml"].read_text() == "[lab]\nname = 'edited'\n"
