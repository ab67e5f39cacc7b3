"""The browser itself: Debian's Chromium starts under Playwright, and its version has not
drifted away from the one this Playwright release is built for.

Playwright speaks the DevTools protocol of one Chromium build (its ``browsers.json``). Debian
ships its own Chromium and updates it with security releases; a few major versions either
way work, further apart protocol changes break things in confusing ways. This test says so
plainly, with both versions, instead of letting the scenarios fail mysteriously.
"""
from __future__ import annotations

import json
from importlib.metadata import version as package_version
from pathlib import Path

import playwright
import pytest
from playwright.sync_api import Browser, Page, expect

from ..support import LiveServer

pytestmark = pytest.mark.e2e

#: How far Debian's Chromium may be from Playwright's own build, in major versions.
#: Playwright 1.65 is built for Chromium 159 and is seen working with Debian's 156.
MAJORS_BEHIND = 5
MAJORS_AHEAD = 2


def expected_chromium() -> str:
    """The Chromium version this Playwright release drives (from its driver's browsers.json)."""
    manifest = Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
    browsers = json.loads(manifest.read_text())["browsers"]
    return next(b["browserVersion"] for b in browsers if b["name"] == "chromium")


def major(version: str) -> int:
    return int(version.split(".", 1)[0])


def test_chromium_launches_and_matches_playwright(browser: Browser, capsys) -> None:
    installed = browser.version
    expected = expected_chromium()
    line = (
        f"Chromium {installed} ({browser.browser_type.name}) driven by Playwright "
        f"{package_version('playwright')}, which is built for Chromium {expected}"
    )
    with capsys.disabled():
        print(f"\n{line}")
    drift = major(installed) - major(expected)
    assert -MAJORS_BEHIND <= drift <= MAJORS_AHEAD, (
        f"{line}: {abs(drift)} major versions apart (allowed: {MAJORS_BEHIND} behind, "
        f"{MAJORS_AHEAD} ahead). Pin playwright in setup.cfg's testing extra to a release "
        "built for this Chromium, or widen the window here after checking the e2e suite passes."
    )


def test_page_loads_from_the_live_server(page: Page, server: LiveServer) -> None:
    """The plumbing the scenarios rely on: a loopback page, its title, scripts running."""
    response = page.goto("/")
    assert response is not None and response.status == 200
    assert response.headers["x-ausername"] == "anonymous"
    expect(page).to_have_title("Home · appserver")
    assert page.evaluate("() => navigator.userAgent").find("HeadlessChrome") >= 0
