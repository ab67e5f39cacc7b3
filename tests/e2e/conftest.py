"""Fixtures for the browser tests: one headless Chromium per test session, a fresh browser
context (its own cookie jar and cache) per test, and the app served by waitress on a loopback
port per module (``live_server_factory``: its own database, on SQLite and on PostgreSQL).

Nothing is downloaded: Playwright drives the Chromium that Debian installs (``apt-get install
chromium``); ``playwright install`` is never needed. Without that Chromium every test here is
skipped, saying why (CI sets APPSERVER_REQUIRE_ALL_TESTS=1, which turns the skip into a
failure). A Chromium that is present but does not start is an error, never a skip.

Screenshots: with ``APPSERVER_SCREENSHOTS=docs`` (``make screenshots``) the tests save PNGs of
the pages the README shows into ``docs/screenshots/``; otherwise they save nothing.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from ..support import ROOT, LiveServer

#: Debian's package puts it here; APPSERVER_CHROMIUM points elsewhere if needed.
CHROMIUM = os.environ.get("APPSERVER_CHROMIUM", "/usr/bin/chromium")

#: Headless in a container as root: no sandbox, no GPU, a small /dev/shm, and none of the
#: background traffic (updates, sync, first-run pages) that would leave 127.0.0.1.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

#: Milliseconds a locator or navigation may wait: the server is local, so anything slower
#: than this is a failure, not a slow machine.
TIMEOUT_MS = 10_000

VIEWPORT = {"width": 1100, "height": 760}


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(
            f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium; "
            "or set APPSERVER_CHROMIUM to another Chromium binary)"
        )
    return CHROMIUM


@pytest.fixture(scope="session")
def playwright(chromium_executable: str) -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright: Playwright, chromium_executable: str, tmp_path_factory) -> Iterator[Browser]:
    """One headless Chromium for the whole run; each test gets fresh contexts from it."""
    home = tmp_path_factory.mktemp("chromium-home")
    # Chromium writes under $HOME and the XDG folders even with a throw-away profile.
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
    }
    browser = playwright.chromium.launch(
        executable_path=chromium_executable, args=CHROMIUM_ARGS, env=env, headless=True
    )
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def server(live_server_factory) -> LiveServer:
    """The app with demo data, on 127.0.0.1, for every test of a module, with the login page
    of development.ini (it lists the demo users). Tests that need a clean slate create their
    own user; the clock only ever moves forward."""
    return live_server_factory(**{"appserver.login.show_demo_users": "true"})


ContextFactory = Callable[..., BrowserContext]


@pytest.fixture
def new_context(browser: Browser, server: LiveServer) -> Iterator[ContextFactory]:
    """``new_context(**options)``: a fresh browser profile (cookies, cache, history) aimed at
    ``server``; a test that needs two browsers, or a restart, calls it again."""
    contexts: list[BrowserContext] = []

    def make(**options: Any) -> BrowserContext:
        options.setdefault("base_url", server.url)
        options.setdefault("viewport", VIEWPORT)
        context = browser.new_context(**options)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def context(new_context: ContextFactory) -> BrowserContext:
    return new_context()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


class Screenshots:
    """Saves the README's screenshots when asked to (``make screenshots``), else nothing."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def take(self, page: Page, name: str, *, full_page: bool = False) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(self.folder / f"{name}.png"), full_page=full_page)


@pytest.fixture(scope="session")
def screenshots() -> Screenshots:
    """``APPSERVER_SCREENSHOTS=docs`` writes ``docs/screenshots/*.png`` (a relative folder is
    taken from the repository root); unset, normal test runs write nothing."""
    target = os.environ.get("APPSERVER_SCREENSHOTS", "").strip()
    if not target:
        return Screenshots(None)
    folder = Path(target)
    if not folder.is_absolute():
        folder = ROOT / folder
    return Screenshots(folder / "screenshots")
