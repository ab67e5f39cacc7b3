"""The HTML login lifecycle, step by step, through the real forms (issue 2): the login form
and its CSRF token, ``os_destination`` (reference session-security item 18), the account
page behind a login, ``POST /logout``, and error pages that tell a person what to do.
"""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import webtest
from sqlalchemy import select

from appserver.models import User, UserSession
from appserver.security.tokens import hash_token

from .test_lifecycle_rest import attributes, basic_auth, session_cookie


def login_form(testapp, destination: str | None = None):
    params = {"os_destination": destination} if destination is not None else {}
    return testapp.get("/login", params=params).forms["login-form"]


def submit_login(testapp, username="fred", password=None, destination=None, **kw):
    form = login_form(testapp, destination)
    form["os_username"] = username
    form["os_password"] = password if password is not None else f"{username}-password"
    return form.submit(**kw)


def logout_form(page):
    (form,) = [form for form in page.forms.values() if form.action == "/logout"]
    return form


def other_browser(testapp) -> webtest.TestApp:
    return webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)


# --- Logging in ------------------------------------------------------------------------------


def test_the_login_form_has_the_seraph_fields_and_a_csrf_token(testapp):
    page = testapp.get("/login")
    form = page.forms["login-form"]
    assert form.method.upper() == "POST" and form.action == "/login"
    assert {"os_username", "os_password", "os_cookie", "os_destination", "csrf_token"} <= set(form.fields)
    assert form["csrf_token"].value
    for element in ("#os_username", "#os_password", "#os_cookie", "#login-submit"):
        assert page.html.select_one(element) is not None
    assert page.html.select_one("#os_password")["type"] == "password"


def test_logging_in_through_the_form(testapp, users):
    response = submit_login(testapp, status=303)
    assert response.headers["Location"] == "http://localhost/"
    assert response.headers["X-Seraph-LoginReason"] == "OK"
    cookie = attributes(session_cookie(response))
    assert cookie["path"] == "/" and "httponly" in cookie and cookie["samesite"].lower() == "lax"
    assert "secure" not in cookie and cookie["max-age"] == "43200"
    home = response.follow()
    assert home.html.select_one("#current-user").text.strip() == "Fred Developer (fred)"
    assert home.headers["X-AUSERNAME"] == "fred"
    assert home.html.select_one("#logout") is not None
    assert home.html.select_one("#login-link") is None


def test_a_login_post_without_the_csrf_token_is_refused_with_a_page(testapp, users):
    testapp.get("/login")  # the browser has the CSRF cookie, but the form field is missing
    response = testapp.post(
        "/login", {"os_username": "fred", "os_password": "fred-password"}, status=400
    )
    assert response.content_type == "text/html"
    assert "reload the page and try again" in response.text
    assert "appserver.session=" not in response.headers.get("Set-Cookie", "")


def test_a_csrf_token_from_another_browser_is_refused(testapp, users):
    stolen = login_form(other_browser(testapp))["csrf_token"].value
    form = login_form(testapp)
    form["csrf_token"].force_value(stolen)
    form["os_username"], form["os_password"] = "fred", "fred-password"
    form.submit(status=400)


def test_a_wrong_password_shows_the_form_again_without_the_password(testapp, users):
    response = submit_login(testapp, password="hunter2-wrong", status=200)
    assert "incorrect" in response.html.select_one("#login-error").text
    assert response.headers["X-Seraph-LoginReason"] == "AUTHENTICATED_FAILED"
    assert response.html.select_one("#os_username")["value"] == "fred"
    assert "hunter2-wrong" not in response.text
    assert "appserver.session=" not in response.headers.get("Set-Cookie", "")
    assert response.html.select_one("#current-user").text.strip() == "Not logged in"


def test_an_unknown_user_gets_the_same_page_as_a_wrong_password(testapp, users):
    wrong = submit_login(testapp, password="nope", status=200)
    unknown = submit_login(testapp, username="nobody", password="nope", status=200)
    assert wrong.html.select_one("#login-error").text == unknown.html.select_one("#login-error").text


def test_empty_fields_are_a_400_asking_for_both(testapp, users):
    response = submit_login(testapp, password="", status=400)
    assert "Enter your username and password" in response.html.select_one("#login-error").text


# --- os_destination --------------------------------------------------------------------------

KEPT = ["/account", "/issues?x=1", "/rest/api/2/myself?a=1&b=2", "/a%20b"]

#: session-security.md item 18, and the same in percent-encoded forms.
OFF_SITE = [
    "http://example.com",
    "https://example.com/account",
    "//example.com",
    "///example.com",
    "\\\\example.com",
    "/\\example.com",
    "\\/example.com",
    "javascript:alert(1)",
    "\t//example.com",
    "\r\n//example.com",
    "\x0b//example.com",
    "/\t/example.com",
    "http%3A%2F%2Fexample.com",
    "%2F%2Fexample.com",
    "/%2Fexample.com",
    "%2F%2F%2Fexample.com",
    "%5C%5Cexample.com",
    "/%5Cexample.com",
    "%5C/example.com",
    "javascript%3Aalert(1)",
    "%09//example.com",
    "/%09/example.com",
    "%0d%0a//example.com",
    "%252F%252Fexample.com",
    "example.com",
    "",
]


@pytest.mark.parametrize("destination", KEPT)
def test_a_relative_destination_is_honoured(testapp, users, destination):
    form = login_form(testapp, destination)
    assert form["os_destination"].value == destination
    form["os_username"], form["os_password"] = "fred", "fred-password"
    assert form.submit(status=303).headers["Location"] == "http://localhost" + destination


@pytest.mark.parametrize("destination", OFF_SITE)
def test_an_off_site_destination_falls_back_to_the_home_page(testapp, users, destination):
    # In the link to the login page ...
    form = login_form(testapp, destination)
    assert form["os_destination"].value == "/"
    form["os_username"], form["os_password"] = "fred", "fred-password"
    assert form.submit(status=303).headers["Location"] == "http://localhost/"
    # ... and forged into the form itself.
    form = login_form(other_browser(testapp))
    form["os_destination"].force_value(destination)
    form["os_username"], form["os_password"] = "fred", "fred-password"
    assert form.submit(status=303).headers["Location"] == "http://localhost/"


def test_a_non_ascii_destination_is_kept_percent_encoded(testapp, users):
    response = submit_login(testapp, destination="/issues?q=€", status=303)
    assert response.headers["Location"] == "http://localhost/issues?q=%E2%82%AC"


@pytest.mark.parametrize("destination, location", [
    ("/issues?page=2&os_authType=basic", "/issues?page=2"),  # the same 401 after the login
    ("/issues?os_authType=BASIC", "/issues"),
    ("/issues?os_authType=cookie", "/issues?os_authType=cookie"),  # met by the login
    ("/issues?os_authType=any&page=2", "/issues?os_authType=any&page=2"),
])
def test_a_login_by_form_drops_only_a_demand_for_basic_from_its_destination(testapp, users, destination, location):
    response = submit_login(testapp, destination=destination, status=303)
    assert response.headers["Location"] == "http://localhost" + location
    response.follow(status=200)


# --- The account page needs a login ----------------------------------------------------------


def test_the_account_page_sends_anonymous_visitors_to_log_in_and_back(testapp, users):
    response = testapp.get("/account", status=303)
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    assert parse_qs(location.query) == {"os_destination": ["/account"]}
    form = response.follow().forms["login-form"]
    assert form["os_destination"].value == "/account"
    form["os_username"], form["os_password"] = "fred", "fred-password"
    account = form.submit(status=303).follow()
    assert account.request.path == "/account"
    assert account.html.select_one("#account-username").text == "fred"
    assert account.html.select_one("#sessions") is not None


def test_the_account_page_shows_the_login_info(testapp, users, clock):
    submit_login(testapp, password="wrong", status=200)
    submit_login(testapp, status=303)
    page = testapp.get("/account")
    assert page.html.select_one("#login-count").text == "1"
    assert page.html.select_one("#failed-count").text == "1"


# --- Logging out -----------------------------------------------------------------------------


def test_logging_out_is_a_post_with_the_csrf_token(testapp, users, dbsession):
    token = session_cookie(submit_login(testapp, status=303)).split(";")[0].split("=", 1)[1]
    response = logout_form(testapp.get("/")).submit(status=303)
    assert response.headers["Location"] == "http://localhost/?notice=logged-out"
    assert response.headers["X-Seraph-LoginReason"] == "OUT"
    assert session_cookie(response).startswith("appserver.session=;")
    home = response.follow()
    assert home.html.select_one("#notice").text.strip() == "You have logged out."
    assert home.html.select_one("#current-user").text.strip() == "Not logged in"
    row = dbsession.scalar(select(UserSession).where(UserSession.token_hash == hash_token(token)))
    assert row.revoked_at is not None
    # The old cookie, replayed, is a dead session: anonymous here, 401 under /rest.
    testapp.set_cookie("appserver.session", token)
    assert testapp.get("/").html.select_one("#session-expired") is not None
    testapp.set_cookie("appserver.session", token)
    testapp.get("/rest/api/2/myself", status=401)


def test_logging_out_twice_lands_where_the_first_did(testapp, users):
    """A double click on Log out, or a second tab's: the second POST carries the cookie and
    the CSRF token of the session the first one ended. It used to get the expired-form page
    (400); it lands on the home page, and the dead cookie is deleted."""
    submit_login(testapp, status=303)
    form = logout_form(testapp.get("/"))
    token = testapp.cookies["appserver.session"]
    form.submit(status=303)
    testapp.set_cookie("appserver.session", token)
    again = form.submit(status=303)
    assert again.headers["Location"] == "http://localhost/?notice=logged-out"
    assert session_cookie(again).startswith("appserver.session=;")
    assert "Not logged in" in again.follow().html.select_one("#current-user").text
    # A POST that presents no session at all (a cross-site form: SameSite kept the cookie
    # back) is checked as any form is.
    testapp.post("/logout", status=400)


def test_get_logout_is_405_with_a_page(testapp, users):
    submit_login(testapp, status=303)
    response = testapp.get("/logout", status=405)
    assert response.content_type == "text/html"
    assert "GET is not allowed here" in response.text
    assert testapp.get("/rest/api/2/myself").json["name"] == "fred"  # still logged in


def test_logout_without_the_csrf_token_is_refused(testapp, users):
    submit_login(testapp, status=303)
    testapp.post("/logout", status=400)
    testapp.post("/logout", {"csrf_token": "forged"}, status=400)
    assert testapp.get("/rest/api/2/myself").json["name"] == "fred"  # still logged in


# --- A stale cookie on a page ----------------------------------------------------------------


def test_an_expired_session_on_a_page_says_so_and_links_back(testapp, users, clock):
    submit_login(testapp, status=303)
    clock.advance(1800)  # the idle timeout
    page = testapp.get("/?x=1")
    assert page.headers["X-AUSERNAME"] == "anonymous"
    assert session_cookie(page).startswith("appserver.session=;")
    notice = page.html.select_one("#session-expired")
    assert "expired" in notice.text
    link = notice.select_one("a")["href"]
    assert parse_qs(urlsplit(link).query) == {"os_destination": ["/?x=1"]}
    # The link leads to the login form, and logging in returns to the page.
    form = testapp.get(link).forms["login-form"]
    form["os_username"], form["os_password"] = "fred", "fred-password"
    assert form.submit(status=303).headers["Location"] == "http://localhost/?x=1"
    # Once the cookie is gone the notice is gone too.
    assert testapp.get("/").html.select_one("#session-expired") is None


@pytest.mark.parametrize("how", ["idle timeout", "logged out elsewhere"])
@pytest.mark.parametrize("path", ["/account", "/admin/users"])
def test_an_expired_session_on_a_login_only_page_says_so_on_the_login_page(
    testapp, users, clock, dbsession, how, path
):
    """The redirect to the login page deletes the stale cookie, so the login page learns of
    the expiry from the redirect: the same notice public pages show, and back to the page."""
    submit_login(testapp, username="admin", status=303)
    if how == "idle timeout":
        clock.advance(1800)
    else:
        other_browser(testapp).get("/")  # nothing shared: revoke through the database
        for row in dbsession.scalars(select(UserSession)):
            row.revoked_at = clock.now()
        dbsession.flush()
    response = testapp.get(path, status=303)
    assert session_cookie(response).startswith("appserver.session=;")
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    assert parse_qs(location.query) == {"os_destination": [path], "expired": ["1"]}
    page = response.follow()
    notice = page.html.select_one("#session-expired")
    assert notice is not None and "Your session has expired" in notice.text
    assert path in notice.text
    form = page.forms["login-form"]
    assert form["os_destination"].value == path
    form["os_username"], form["os_password"] = "admin", "admin-password"
    assert form.submit(status=303).headers["Location"] == f"http://localhost{path}"
    assert testapp.get("/").html.select_one("#session-expired") is None


def test_an_anonymous_visitor_of_a_login_only_page_is_not_told_of_an_expiry(testapp, users):
    response = testapp.get("/account", status=303)
    assert "expired" not in parse_qs(urlsplit(response.headers["Location"]).query)
    assert response.follow().html.select_one("#session-expired") is None


def test_the_expiry_flag_is_only_a_flag(testapp):
    """``expired`` switches a fixed text on; no other value, and no text, comes from the URL."""
    assert testapp.get("/login?expired=1").html.select_one("#session-expired") is not None
    for value in ("0", "yes", "<b>x</b>"):
        page = testapp.get("/login", params={"expired": value})
        assert page.html.select_one("#session-expired") is None
        assert "<b>x</b>" not in page.text


# --- Error pages -----------------------------------------------------------------------------


def assert_helpful_page(response, status: int, *, says: str, links_to: str) -> None:
    assert response.status_int == status
    assert response.content_type == "text/html"
    assert f"({status})" in response.html.select_one("h1").text
    assert says in response.html.select_one("main").text
    actions = [a["href"] for a in response.html.select("main .actions a")]
    assert any(href.startswith(links_to) for href in actions), actions
    assert "Traceback" not in response.text


def test_404_page(testapp):
    response = testapp.get("/no/such/page", status=404)
    assert_helpful_page(response, 404, says="Check the link", links_to="/")
    assert response.headers["X-AUSERNAME"] == "anonymous"


def test_403_page_for_a_logged_in_user_without_permission(testapp, users):
    submit_login(testapp, status=303)
    response = testapp.get("/admin/users", status=403)
    assert_helpful_page(response, 403, says="Ask an administrator", links_to="/")


def test_401_page_offers_a_login_that_returns_here(testapp):
    response = testapp.get("/?os_authType=cookie", status=401)
    assert_helpful_page(response, 401, says="session cookie", links_to="/login?os_destination=")
    (link,) = [a["href"] for a in response.html.select("main .actions a")]
    assert parse_qs(urlsplit(link).query) == {"os_destination": ["/?os_authType=cookie"]}


def test_500_page_says_what_to_do_and_shows_no_details(testapp, monkeypatch):
    def broken(request):
        raise RuntimeError("internal detail: /secret/path")

    monkeypatch.setattr("appserver.views.pages.notice_for", broken)
    response = testapp.get("/", status=500)
    assert_helpful_page(response, 500, says="tell the administrator", links_to="/")
    assert "internal detail" not in response.text
    assert response.headers["X-AUSERNAME"] == "anonymous"


def add_a_broken_user(request, *args, **kw):
    request.dbsession.add(User(username="fred", username_key="fred"))  # taken, and incomplete


def test_a_500_after_a_failed_write_is_still_the_page(testapp, users, monkeypatch):
    """A statement that fails leaves the request's database session unusable until rolled
    back; the 500 page must not ask it who is logged in (it was waitress's bare "Internal
    Server Error" when a unique key was violated)."""
    def clash(request, *args):
        add_a_broken_user(request)
        request.dbsession.flush()

    monkeypatch.setattr("appserver.views.account.personal_tokens.create", clash)
    submit_login(testapp, status=303)
    form = testapp.get("/account").forms["token-form"]
    form["name"], form["expiration_days"] = "laptop", "30"
    response = form.submit(status=500)
    assert_helpful_page(response, 500, says="tell the administrator", links_to="/")
    # The same under /rest: Jira's JSON, not the server's own error.
    monkeypatch.setattr("appserver.views.rest.tokens.personal_tokens.create", clash)
    rest = testapp.post_json("/rest/pat/latest/tokens", {"name": "ci", "expirationDuration": 1},
                             headers=basic_auth("fred", "fred-password"), status=500)
    assert set(rest.json) == {"errorMessages", "errors"}


def test_a_500_when_the_commit_fails_is_still_the_page(testapp, users, monkeypatch, caplog):
    """The same when nothing flushes before pyramid_tm commits: the view has answered (a
    redirect), the COMMIT's flush fails, and pyramid_tm shows the exception view."""
    monkeypatch.setattr("appserver.views.account.accounts.revoke_sessions", add_a_broken_user)
    submit_login(testapp, status=303)
    response = testapp.get("/account").forms["revoke-others-form"].submit(status=500)
    assert_helpful_page(response, 500, says="tell the administrator", links_to="/")
    assert "unhandled error on POST" in caplog.text
    assert "autoflush" not in caplog.text  # the COMMIT's flush, not a query's


def test_a_500_under_rest_is_json(testapp, users, monkeypatch):
    def broken(request, user):
        raise RuntimeError("internal detail")

    monkeypatch.setattr("appserver.views.rest.api.user_json", broken)
    submit_login(testapp, status=303)
    response = testapp.get("/rest/api/2/myself", status=500)
    assert set(response.json) == {"errorMessages", "errors"}
    assert "internal detail" not in response.text


def test_a_page_that_prefers_json_gets_json_errors(testapp):
    response = testapp.get("/no/such/page", headers={"Accept": "application/json"}, status=404)
    assert set(response.json) == {"errorMessages", "errors"}
