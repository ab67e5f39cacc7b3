"""Personal access tokens and WebSudo as a person lives them (issue 12): create a token on
the account page and use it from a REST client; an administrator meets the password prompt,
returns to the page, and a change that needed it is not made behind their back.

The server's clock is frozen: the WebSudo window ends by moving it, never by sleeping.
"""
from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from appserver.client import AppserverClient, AuthenticationError
from appserver.security.login import find_user

from ..support import LiveServer, create_user
from .conftest import Screenshots
from .flows import log_in, path_of, session_cookie, url_path

pytestmark = pytest.mark.e2e

ALL_KEYS = [f"DEMO-{n}" for n in range(1, 201)]


def test_a_token_made_on_the_account_page_works_in_a_rest_client(
    page: Page, server: LiveServer, screenshots: Screenshots
) -> None:
    with server.request() as request:
        create_user(request, "tina", "tina-password")
    log_in(page, "tina")
    page.goto("/account")
    expect(page.locator("#tokens")).to_contain_text("No tokens")
    page.locator("#token_name").fill("laptop script")
    page.locator("#token_days").fill("30")
    with page.expect_navigation():
        page.locator("#create-token").click()
    expect(page.locator("#new-token-notice")).to_contain_text("shown only this once")
    raw = page.locator("#new-token").input_value()
    assert raw.startswith("apt_")
    # Focused and selected, ready to copy, although the answer opened at the tokens card,
    # where Chromium skips autofocus (an outside review found nothing focused).
    expect(page.locator("#new-token")).to_be_focused()
    assert page.evaluate("document.getSelection().toString() || "
                         "document.activeElement.value.slice(document.activeElement.selectionStart, "
                         "document.activeElement.selectionEnd)") == raw
    screenshots.take(page, "token-created")

    client = AppserverClient(server.url, token=raw)  # a REST client, no cookie, no password
    assert [issue["key"] for issue in client.search("project = DEMO ORDER BY key")] == ALL_KEYS
    assert client.myself()["name"] == "tina"

    page.goto("/account")  # shown once: a reload no longer holds it
    expect(page.locator("#new-token")).to_have_count(0)
    assert raw not in page.content()
    row = page.locator("#tokens tbody tr").first
    expect(row.locator(".token-name")).to_have_text("laptop script")
    expect(row).not_to_contain_text("never")  # used just now, and it expires
    expect(page.locator("#tokens-password-note")).to_contain_text("does not revoke your tokens")

    with page.expect_navigation():
        row.locator(".revoke-token").click()
    expect(page.locator("#notice")).to_contain_text("has been revoked")
    with pytest.raises(AuthenticationError) as raised:
        client.myself()
    assert raised.value.status == 401 and "revoked" in str(raised.value)


def test_an_administrator_walks_through_the_websudo_prompt(
    page: Page, server: LiveServer, screenshots: Screenshots
) -> None:
    with server.request() as request:
        create_user(request, "boss", "boss-password", admin=True)
        create_user(request, "victor", "victor-password")
    log_in(page, "boss")
    with page.expect_navigation():
        page.locator("#admin-link").click()
    assert path_of(page) == "/websudo?os_destination=%2Fadmin%2Fusers"
    expect(page.locator("#websudo_username")).to_have_value("boss")
    screenshots.take(page, "websudo")

    page.locator("#websudo_password").fill("not-the-password")
    with page.expect_navigation():
        page.locator("#websudo-submit").click()
    expect(page.locator("#websudo-error")).to_contain_text("not correct")

    page.locator("#websudo_password").fill("boss-password")
    with page.expect_response(lambda r: r.request.method == "POST" and "/websudo" in r.url) as posted:
        with page.expect_navigation():
            page.locator("#websudo-submit").click()
    assert posted.value.status == 303
    assert posted.value.headers["x-atlassian-websudo"] == "Has-Authentication"
    assert path_of(page) == "/admin/users"
    expect(page.locator("#websudo-status")).to_contain_text("another 10 minutes")

    # Deactivating asks first, on a page of its own; ten idle minutes later the window has
    # closed, and that open page's button meets the prompt.
    with page.expect_navigation():
        page.locator('tr[data-username="victor"] .action-deactivate').click()
    confirmation = path_of(page)
    expect(page.locator("#confirm-title")).to_have_text("Deactivate victor?")
    server.clock.advance(601)
    with page.expect_navigation():
        page.locator("#confirm-submit").click()
    assert path_of(page).startswith("/websudo?")
    expect(page.locator("#websudo-resubmit")).to_contain_text("not")
    page.locator("#websudo_password").fill("boss-password")
    with page.expect_navigation():
        page.locator("#websudo-submit").click()
    assert path_of(page) == confirmation
    with server.request() as request:
        assert find_user(request, "victor").active  # not replayed behind the admin's back
    with page.expect_navigation():
        page.locator("#confirm-submit").click()
    expect(page.locator("#notice")).to_contain_text("has been updated")
    expect(page.locator('tr[data-username="victor"]')).to_contain_text("Inactive")

    # Dropping it by hand: the next admin page asks again; the login itself goes on.
    with page.expect_navigation():
        page.locator("#websudo-drop").click()
    expect(page.locator("#notice")).to_contain_text("Administrator access dropped")
    page.goto("/admin/users")
    assert path_of(page).startswith("/websudo?")
    assert session_cookie(page.context, server) is not None


def test_a_double_clicked_confirmation_keeps_the_administrator_logged_in(page: Page, server: LiveServer) -> None:
    """A confirmation rotates the session, and a second copy of the form sent with the
    session the first one ended is answered as a stale cookie (an outside review, with a
    scripted second POST; in Chromium on PostgreSQL a double click did it too, now and
    then). The page sends a form once (static/forms.js): the administrator stays logged in
    and elevated, and so after a double-clicked password change, which rotates the session
    too."""
    with server.request() as request:
        create_user(request, "dora", "dora-password", admin=True)
    log_in(page, "dora")
    page.goto("/websudo?os_destination=%2Fadmin%2Fusers")
    page.locator("#websudo_password").fill("dora-password")
    page.locator("#websudo-submit").dblclick()
    # dblclick() may return before the page has even sent the form: Playwright waits only
    # for a navigation the renderer has asked for by then, and a busy renderer asks later
    # (seen in two workers; the page was still the prompt). Wait for where it must end; a
    # logged-out administrator ends at the login page instead, and this times out.
    page.wait_for_url(lambda url: url_path(url) == "/admin/users")
    assert path_of(page) == "/admin/users"
    expect(page.locator("#websudo-status")).to_contain_text("another 10 minutes")
    # The password change rotates the session too: the same holds there.
    page.goto("/account")
    page.locator("#current_password").fill("dora-password")
    page.locator("#new_password").fill("dora-password-2")
    page.locator("#confirm_password").fill("dora-password-2")
    page.locator("#change-password").dblclick()
    page.wait_for_url(lambda url: url_path(url) == "/account" and "notice=password-changed" in url)
    expect(page.locator("#notice")).to_contain_text("Your password has been changed")
    page.goto("/account")
    assert path_of(page) == "/account"


def test_an_administrator_sets_a_forgotten_password(page: Page, server: LiveServer, browser) -> None:
    """The person who forgot their password locked the account guessing it; the
    administrator's Set password (after WebSudo) lets them in with the new one at once, and
    logs out the browser that was still logged in."""
    with server.request() as request:
        create_user(request, "ada", "ada-password", admin=True)
        create_user(request, "walt", "walt-password")
    others = [browser.new_context(base_url=server.url) for _ in range(2)]
    try:
        _set_a_forgotten_password(page, *(context.new_page() for context in others))
    finally:
        for context in others:
            context.close()


def _set_a_forgotten_password(page: Page, forgetful: Page, guesser: Page) -> None:
    log_in(forgetful, "walt")
    for attempt in range(3):
        guesser.goto("/login")
        guesser.locator("#os_username").fill("walt")
        guesser.locator("#os_password").fill(f"guess-{attempt}")
        with guesser.expect_navigation():
            guesser.locator("#login-submit").click()
    log_in(page, "ada")
    page.goto("/admin/users")
    page.locator("#websudo_password").fill("ada-password")
    with page.expect_navigation():
        page.locator("#websudo-submit").click()
    with page.expect_navigation():
        page.locator('tr[data-username="walt"] .action-password').press("Space")  # a real button
    expect(page.locator("#set-password-title")).to_have_text("Set the password of walt")
    page.locator("#new_password").fill("walt-new-password")
    page.locator("#confirm_password").fill("walt-new-password")
    with page.expect_navigation():
        page.locator("#set-password-submit").click()
    expect(page.locator("#notice")).to_contain_text("The password has been set")
    expect(page.locator('tr[data-username="walt"]')).to_contain_text("Active")

    forgetful.goto("/account")  # its session ended with the reset
    assert path_of(forgetful).startswith("/login")
    guesser.goto("/login")
    guesser.locator("#os_username").fill("walt")
    guesser.locator("#os_password").fill("walt-new-password")
    with guesser.expect_navigation():
        guesser.locator("#login-submit").click()
    guesser.goto("/account")
    expect(guesser.locator("#account-username")).to_have_text("walt")


def test_a_page_sends_a_form_once(page: Page, server: LiveServer) -> None:
    """static/forms.js: the second submit of a POST form is dropped (the double click above
    is a race the browser may or may not run; this is the rule itself). A GET form, which
    only opens a page, is not held back."""
    with server.request() as request:
        create_user(request, "otto", "otto-password", admin=True)
    log_in(page, "otto")
    page.goto("/websudo?os_destination=%2Fadmin%2Fusers")
    held_back = page.evaluate(
        """() => {
            const send = (form) => {
                const event = new Event("submit", {bubbles: true, cancelable: true});
                form.dispatchEvent(event);
                return event.defaultPrevented;
            };
            const post = document.getElementById("websudo-form");
            const get = document.createElement("form");
            get.method = "get";
            document.body.appendChild(get);
            return [send(post), send(post), send(get), send(get)];
        }"""
    )
    assert held_back == [False, True, False, False]
