"""The login lifecycle as a browser lives it: log in, the cookie the browser keeps, expiry,
a page script meeting an expired session, remember me across a restart, lock-out, log out.

The server's clock is frozen: expiry and cool-downs happen by moving it, never by sleeping.
"""
from __future__ import annotations

import pytest
from playwright.sync_api import BrowserContext, Page, Request, expect

from ..support import LiveServer, create_user
from .conftest import ContextFactory, Screenshots
from .flows import (
    expect_anonymous,
    expire_sessions,
    log_in,
    page_fetch,
    path_of,
    remember_cookie,
    session_cookie,
    settings,
    submit_login,
    url_path,
)

pytestmark = pytest.mark.e2e


# Scenario 1: the anonymous visitor, and logging in from a page that needs it.

PUBLIC_ISSUES = {"DEMO-1", "DEMO-41", "DEMO-81", "DEMO-121", "DEMO-161"}


def issue_keys(page: Page) -> list[str]:
    return page.locator("#issue-table tr.issue-row").evaluate_all(
        "rows => rows.map(row => row.dataset.key)"
    )


def test_anonymous_sees_public_issues_and_login_returns_to_private_issue(
    page: Page, server: LiveServer, screenshots: Screenshots
) -> None:
    page.goto("/")
    expect(page.locator("h1")).to_have_text("Welcome")
    expect_anonymous(page)
    with page.expect_navigation():
        page.locator("#issues-link").click()

    assert path_of(page) == "/issues"
    expect(page.locator("#issue-count")).to_have_text("5")
    expect(page.locator("#anonymous-hint")).to_be_visible()
    assert set(issue_keys(page)) == PUBLIC_ISSUES
    expect(page.locator("#next-page")).to_have_count(0)
    screenshots.take(page, "issues-anonymous")

    # A private issue: the same 404 as a missing one (no existence leak) ...
    response = page.goto("/issues/DEMO-7")
    assert response is not None and response.status == 404
    expect(page.locator("#issue-key")).to_have_count(0)
    # ... whose "Log in" link brings the visitor back to it (os_destination).
    with page.expect_navigation():
        page.locator("#login-link").click()
    assert path_of(page) == "/login?os_destination=%2Fissues%2FDEMO-7"
    submit_login(page, "alice", "alice-password")
    assert path_of(page) == "/issues/DEMO-7"
    expect(page.locator("#issue-key")).to_have_text("DEMO-7")
    expect(page.locator("#current-user")).to_have_text("Alice Tester (alice)")


# Scenario 2: log in through the form; the cookie the browser keeps; every issue.


def test_form_login_sets_an_httponly_samesite_session_cookie(
    page: Page, context: BrowserContext, server: LiveServer, screenshots: Screenshots
) -> None:
    page.goto("/login")
    expect(page.locator("#login-form")).to_be_visible()
    expect(page.locator("#demo-users tbody tr")).to_have_count(3)  # a development server
    assert session_cookie(context, server) is None
    screenshots.take(page, "login")

    response = submit_login(page, "fred", "fred-password")

    assert response.status == 200 and path_of(page) == "/"
    expect(page.locator("#current-user")).to_have_text("Fred Developer (fred)")
    cookie = session_cookie(context, server)
    assert cookie is not None, context.cookies()
    configured = settings(server)
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["secure"] is configured.secure_cookies
    assert cookie["path"] == "/" and cookie["domain"] == "127.0.0.1"  # host-only
    assert cookie["expires"] > 0  # Max-Age: the server's absolute limit, not "until quit"
    # HttpOnly for real: the page's own scripts cannot read the token.
    assert configured.session_cookie not in page.evaluate("() => document.cookie")
    # The page's scripts still act as the user: the browser sends the cookie with fetch().
    me = page_fetch(page, "/rest/api/2/myself")
    assert me["status"] == 200 and me["body"]["name"] == "fred"

    # Logged in, the issue list has all 200, 50 to a page.
    page.goto("/issues")
    expect(page.locator("#issue-count")).to_have_text("200")
    expect(page.locator("#anonymous-hint")).to_have_count(0)
    expect(page.locator("#page-info")).to_have_text("Page 1 of 4")
    screenshots.take(page, "issues")
    seen: list[str] = []
    for number in range(1, 5):
        expect(page.locator("#page-info")).to_have_text(f"Page {number} of 4")
        keys = issue_keys(page)
        assert len(keys) == 50
        seen += keys
        if number < 4:
            with page.expect_navigation():
                page.locator("#next-page").click()
    expect(page.locator("#next-page")).to_have_count(0)
    assert sorted(seen) == sorted(f"DEMO-{n}" for n in range(1, 201))


# Scenario 3: the session expires (idle timeout, or revoked from another browser).


def test_expired_session_shows_notice_and_anonymous_view(
    page: Page, context: BrowserContext, server: LiveServer, screenshots: Screenshots
) -> None:
    log_in(page, "fred")
    assert session_cookie(context, server) is not None

    expire_sessions(server)
    page.goto("/issues")

    notice = page.locator("#session-expired")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("Your session has expired")
    expect_anonymous(page)
    expect(page.locator("#issue-count")).to_have_text("5")  # the anonymous view
    screenshots.take(page, "session-expired")
    assert session_cookie(context, server) is None, "the server's deletion cookie was ignored"

    # "Log in again" leads back to this page; the notice is said once (the cookie is gone).
    with page.expect_navigation():
        notice.locator("a").click()
    assert path_of(page) == "/login?os_destination=%2Fissues"
    expect(page.locator("#session-expired")).to_have_count(0)
    submit_login(page, "fred", "fred-password")
    assert path_of(page) == "/issues"
    expect(page.locator("#issue-count")).to_have_text("200")


def test_expired_session_on_a_login_only_page_is_said_on_the_login_page(
    page: Page, context: BrowserContext, server: LiveServer
) -> None:
    """/account needs a login: the browser lands on the login page, which says why."""
    log_in(page, "fred")
    expire_sessions(server)
    page.goto("/account")

    assert path_of(page) == "/login?os_destination=%2Faccount&expired=1"
    notice = page.locator("#session-expired")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("Your session has expired")
    expect_anonymous(page)
    assert session_cookie(context, server) is None
    submit_login(page, "fred", "fred-password")
    assert path_of(page) == "/account"
    expect(page.locator("#account-username")).to_have_text("fred")
    expect(page.locator("#session-expired")).to_have_count(0)


def test_session_revoked_from_another_browser_shows_notice(
    new_context: ContextFactory, server: LiveServer
) -> None:
    laptop, phone = new_context(), new_context()
    laptop_page, phone_page = laptop.new_page(), phone.new_page()
    log_in(laptop_page, "alice")
    log_in(phone_page, "alice", path="/login?os_destination=/account")
    laptop_session = session_cookie(laptop, server)
    assert laptop_session is not None

    # On the phone's account page: the row that is not "this session" is the laptop's.
    assert path_of(phone_page) == "/account"
    other = phone_page.locator("#sessions tbody tr:not(.current)")
    expect(other).to_have_count(1)
    expect(phone_page.locator("#sessions tbody tr.current")).to_have_count(1)
    with phone_page.expect_navigation():
        other.locator("button.revoke-session").click()
    expect(phone_page.locator("#notice")).to_have_text("The session has been logged out.")
    expect(phone_page.locator("#sessions tbody tr")).to_have_count(1)

    laptop_page.goto("/")
    expect(laptop_page.locator("#session-expired")).to_be_visible()
    expect_anonymous(laptop_page)
    assert session_cookie(laptop, server) is None
    phone_page.goto("/")
    expect(phone_page.locator("#current-user")).to_have_text("Alice Tester (alice)")


# Scenario 4: the page's own script meets the expired session.


def test_page_fetch_with_expired_cookie_gets_401_without_basic_challenge(
    new_context: ContextFactory, server: LiveServer
) -> None:
    """401, not the anonymous answer, and never a Basic challenge: a browser answers a Basic
    challenge with a password dialog. Headless Chromium shows no dialog, so the context is
    given fred's credentials as a tripwire: had the server challenged with Basic, Chromium
    would have answered it and the request would have come back 200 as fred. The second half
    proves the tripwire works."""
    context = new_context(http_credentials={"username": "fred", "password": "fred-password"})
    page = context.new_page()
    log_in(page, "fred")
    requests_sent: list[Request] = []
    page.on("request", lambda request: requests_sent.append(request))

    expire_sessions(server)
    answer = page_fetch(page, "/rest/api/2/search?jql=project%20%3D%20DEMO")

    assert answer["status"] == 401, answer
    challenge = answer["headers"]["www-authenticate"]
    assert challenge.startswith("Session ") and "basic" not in challenge.lower(), challenge
    assert answer["headers"]["x-ausername"] == "anonymous"
    assert "session has expired" in answer["body"]["errorMessages"][0]
    searches = [r for r in requests_sent if "/rest/api/2/search" in r.url]
    assert len(searches) == 1, "the browser retried the request: it answered a challenge"
    assert "authorization" not in searches[0].all_headers()
    # Kept (rule 1): the page's next fetch is a 401 too, never the 5 public issues.
    assert session_cookie(context, server) is not None, "the 401 should leave the stale cookie"
    assert page_fetch(page, "/rest/api/2/search?jql=project%20%3D%20DEMO")["status"] == 401

    # The tripwire: a Basic challenge (os_authType=basic asks for one) is answered by the
    # browser with the context's credentials.
    tripwire = page_fetch(page, "/rest/api/2/myself?os_authType=basic")
    assert (tripwire["status"], tripwire["body"]["name"]) == (200, "fred")


# Scenario 5: remember me survives a browser restart, after the session expired.


def restart(context: BrowserContext, new_context: ContextFactory) -> BrowserContext:
    """Quit and start the browser again: persistent cookies survive, session cookies do not."""
    state = context.storage_state()
    context.close()
    state["cookies"] = [c for c in state["cookies"] if c["expires"] != -1]
    return new_context(storage_state=state)


def test_remember_me_survives_restart_after_session_expired(
    new_context: ContextFactory, server: LiveServer
) -> None:
    before = new_context()
    log_in(before.new_page(), "fred", remember=True)
    old_session, old_remember = session_cookie(before, server), remember_cookie(before, server)
    assert old_remember is not None and old_remember["httpOnly"] and old_remember["sameSite"] == "Lax"
    remember_days = (old_remember["expires"] - old_session["expires"]) / 86400
    assert remember_days > 10, "the remember-me cookie should outlive the session cookie by days"

    after = restart(before, new_context)
    expire_sessions(server)
    page = after.new_page()
    response = page.goto("/account")

    assert response is not None and response.status == 200 and path_of(page) == "/account"
    expect(page.locator("#account-username")).to_have_text("fred")
    expect(page.locator("#session-expired")).to_have_count(0)
    new_session, new_remember = session_cookie(after, server), remember_cookie(after, server)
    assert new_session is not None and new_session["value"] != old_session["value"]
    assert new_remember is not None and new_remember["value"] != old_remember["value"]  # rotated


def test_without_remember_me_a_restart_after_expiry_is_anonymous(
    new_context: ContextFactory, server: LiveServer
) -> None:
    before = new_context()
    log_in(before.new_page(), "fred")
    assert remember_cookie(before, server) is None

    after = restart(before, new_context)
    expire_sessions(server)
    page = after.new_page()
    page.goto("/")

    expect(page.locator("#session-expired")).to_be_visible()
    expect_anonymous(page)
    assert session_cookie(after, server) is None


# Scenario 6: lock-out after failed logins, and the cool-down.


def test_three_failed_logins_lock_out_until_the_cool_down(
    page: Page, server: LiveServer, screenshots: Screenshots
) -> None:
    with server.request() as request:
        create_user(request, "lockout-lou", "lou-password", display_name="Lou Lockout")
    limit, cool_down = settings(server).max_failures, settings(server).lockout_seconds
    assert limit == 3

    page.goto("/login")
    for attempt in range(1, limit + 1):
        response = submit_login(page, "lockout-lou", f"wrong-{attempt}")
        assert response.status == 200
        expect(page.locator("#login-error")).to_contain_text("username and password are incorrect")
        expect(page.locator("#os_username")).to_have_value("lockout-lou")

    # Locked: even the right password is not checked, and the page says how long to wait.
    response = submit_login(page, "lockout-lou", "lou-password")
    assert response.status == 403
    assert response.headers["retry-after"] == str(cool_down)
    error = page.locator("#login-error")
    expect(error).to_contain_text("Too many failed login attempts")
    expect(error).to_contain_text(f"Wait {cool_down} seconds")
    expect_anonymous(page)
    screenshots.take(page, "lockout")

    server.clock.advance(cool_down + 1)
    response = submit_login(page, "lockout-lou", "lou-password")
    assert response.status == 200 and path_of(page) == "/"
    expect(page.locator("#current-user")).to_have_text("Lou Lockout (lockout-lou)")


# Scenario 7: log out.


def test_logout_deletes_cookie_back_button_shows_nothing_private_and_replay_fails(
    page: Page, context: BrowserContext, server: LiveServer, screenshots: Screenshots
) -> None:
    response = log_in(page, "alice", path="/login?os_destination=/account")
    assert path_of(page) == "/account"
    assert "no-store" in response.headers["cache-control"]
    expect(page.locator("#account-username")).to_have_text("alice")
    expect(page.locator("#sessions tbody tr.current")).to_have_count(1)
    screenshots.take(page, "account")
    old = session_cookie(context, server)
    assert old is not None

    with page.expect_navigation():
        page.locator("#logout").click()
    expect(page.locator("#notice")).to_have_text("You have logged out.")
    expect_anonymous(page)
    assert session_cookie(context, server) is None

    # Back: the private page is not shown from the browser's cache (no-store); the browser
    # asks the server again, which now sends it to the login page. (Playwright turns off
    # Chromium's back/forward cache; pages sent with no-store are not kept there either.)
    back = page.go_back()
    assert back is not None, "the back button showed the account page from a cache"
    came_from = back.request.redirected_from
    assert came_from is not None and url_path(came_from.url) == "/account", back.url
    assert path_of(page) == "/login?os_destination=%2Faccount"
    expect(page.locator("#account-username")).to_have_count(0)
    expect(page.locator("#sessions")).to_have_count(0)
    expect(page.locator("body")).not_to_contain_text("alice@example.com")

    # The old cookie, put back by hand, is refused: logout revoked the session on the server.
    context.add_cookies([old])
    response = page.goto("/")
    assert response is not None and response.headers["x-ausername"] == "anonymous"
    expect(page.locator("#session-expired")).to_be_visible()
    expect_anonymous(page)
    context.add_cookies([old])
    assert page_fetch(page, "/rest/api/2/myself")["status"] == 401
