"""What a person does in the browser (log in through the form, read the cookie jar), shared by
the scenarios. Selectors are the element ids the templates promise to keep stable."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import BrowserContext, Page, Response, expect
from playwright.sync_api import Error as PlaywrightError

from ..support import LiveServer


def settings(server: LiveServer):
    return server.app.registry.appserver_settings


def path_of(page: Page) -> str:
    """The page's path and query string: where the browser is, without the server's origin."""
    parts = urlsplit(page.url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def url_path(url: str) -> str:
    return urlsplit(url).path


def submit_login(page: Page, username: str, password: str, *, remember: bool = False) -> Response:
    """Fill in the login form already on the page and send it; returns the final response."""
    page.locator("#os_username").fill(username)
    page.locator("#os_password").fill(password)
    if remember:
        page.locator("#os_cookie").check()
    with page.expect_navigation() as navigation:
        page.locator("#login-submit").click()
    response = navigation.value
    assert response is not None
    return response


def log_in(
    page: Page, username: str, password: str | None = None, *, remember: bool = False, path: str = "/login"
) -> Response:
    """Open the login page (``path`` may carry ``os_destination``) and log in; asserts it
    worked: the header names the user."""
    page.goto(path)
    response = submit_login(page, username, password or f"{username}-password", remember=remember)
    expect(page.locator("#current-user")).to_contain_text(f"({username})")
    return response


def cookie(context: BrowserContext, name: str) -> dict[str, Any] | None:
    """The browser's own record of a cookie (HttpOnly ones included), or None."""
    found = [c for c in context.cookies() if c["name"] == name]
    assert len(found) <= 1, found
    return found[0] if found else None


def session_cookie(context: BrowserContext, server: LiveServer) -> dict[str, Any] | None:
    return cookie(context, settings(server).session_cookie)


def remember_cookie(context: BrowserContext, server: LiveServer) -> dict[str, Any] | None:
    return cookie(context, settings(server).remember_cookie)


def expire_sessions(server: LiveServer) -> None:
    """Move the server's clock past the idle timeout: every session goes stale, no sleeping."""
    server.clock.advance(settings(server).idle_timeout + 1)


def expect_anonymous(page: Page) -> None:
    expect(page.locator("#current-user")).to_have_text("Not logged in")
    expect(page.locator("#login-link")).to_be_visible()
    expect(page.locator("#logout")).to_have_count(0)


#: fetch() from the page, with a deadline: a request the browser holds back (for instance at
#: an HTTP authentication prompt, which headless Chromium never answers) must fail the test,
#: not hang it. Header names come back in lower case.
FETCH_SCRIPT = """async ([url, ms]) => {
    const r = await fetch(url, {signal: AbortSignal.timeout(ms)});
    const text = await r.text();
    let body = null;
    try { body = JSON.parse(text); } catch (e) { body = text; }
    return {status: r.status, headers: Object.fromEntries(r.headers.entries()), body};
}"""

FETCH_DEADLINE_MS = 5_000


def page_fetch(page: Page, url: str) -> dict[str, Any]:
    """What the page's own script gets from ``fetch(url)`` (same origin, cookies included)."""
    try:
        return page.evaluate(FETCH_SCRIPT, [url, FETCH_DEADLINE_MS])
    except PlaywrightError as error:
        if "TimeoutError" in str(error) or "timed out" in str(error):
            raise AssertionError(
                f"fetch({url!r}) got no answer within {FETCH_DEADLINE_MS} ms: the browser is "
                "holding the request, as it does at an HTTP authentication prompt"
            ) from error
        raise
