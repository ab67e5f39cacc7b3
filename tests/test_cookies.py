"""Cookie attributes (issue 5 "Redirects and cookies"; session-security.md item 10).

Production (``appserver.session.secure = true``): every cookie is ``__Host-``-prefixed,
``Secure; HttpOnly; SameSite=Lax; Path=/`` and has no ``Domain``; deletion cookies (logout,
a stale cookie) carry the same attributes as the cookie they delete, or browsers keep the
original. Development over plain http never sets ``Secure`` (the jira client would loop:
atlassian-rest-auth.md section 7).

WebTest talks plain http; ``wsgi.url_scheme = https`` makes the app (and WebTest's cookie
jar, which withholds Secure cookies from http URLs) see https.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import webtest

import appserver
from appserver.settings import parse_settings

from .conftest import bind_app
from .support import SECRET

LOGIN = "/rest/auth/1/session"
MYSELF = "/rest/api/2/myself"
HTTPS = {"wsgi.url_scheme": "https", "HTTP_HOST": "localhost", "REMOTE_ADDR": "127.0.0.1"}
#: Pyramid checks Origin/Referer on https form posts (CSRF); a same-site browser sends one.
SAME_ORIGIN = {"Origin": "https://localhost"}


@dataclass(frozen=True)
class SetCookie:
    name: str
    value: str
    attributes: dict[str, str | bool]  # lower-cased names; flags are True

    @property
    def deletes(self) -> bool:
        return self.value in ("", '""') and self.attributes.get("max-age") == "0"


def set_cookies(response) -> dict[str, SetCookie]:
    """The response's Set-Cookie headers by cookie name (one per name is expected)."""
    found: dict[str, SetCookie] = {}
    for header in response.headers.getall("Set-Cookie"):
        pair, *rest = [part.strip() for part in header.split(";")]
        name, _, value = pair.partition("=")
        attributes: dict[str, str | bool] = {}
        for part in rest:
            key, eq, val = part.partition("=")
            attributes[key.strip().lower()] = val.strip() if eq else True
        assert name not in found, f"two Set-Cookie headers for {name}"
        found[name] = SetCookie(name, value, attributes)
    return found


def assert_production_attributes(cookie: SetCookie) -> None:
    assert cookie.name.startswith("__Host-"), cookie
    assert cookie.attributes.get("secure") is True, cookie
    assert cookie.attributes.get("httponly") is True, cookie
    assert str(cookie.attributes.get("samesite")).lower() == "lax", cookie
    assert cookie.attributes.get("path") == "/", cookie
    assert "domain" not in cookie.attributes, cookie


def assert_development_attributes(cookie: SetCookie) -> None:
    assert not cookie.name.startswith(("__Host-", "__Secure-")), cookie
    assert "secure" not in cookie.attributes, cookie
    assert cookie.attributes.get("httponly") is True, cookie
    assert str(cookie.attributes.get("samesite")).lower() == "lax", cookie
    assert cookie.attributes.get("path") == "/", cookie
    assert "domain" not in cookie.attributes, cookie


@pytest.fixture(scope="module")
def production_app(app_settings):
    """Built once per module (what ``make_app`` would build per test)."""
    return appserver.main({}, **{**app_settings, "appserver.session.secure": "true"})


@pytest.fixture
def production(production_app, connection, clock) -> webtest.TestApp:
    bind_app(production_app, connection)
    return webtest.TestApp(production_app, extra_environ=HTTPS)


def form_login(client, username: str = "fred", remember: bool = False, headers=SAME_ORIGIN):
    page = client.get("/login")
    form = page.forms["login-form"]
    form["os_username"], form["os_password"] = username, f"{username}-password"
    if remember:
        form["os_cookie"] = True
    return page, form.submit(headers=headers, status=303)


# --- production ----------------------------------------------------------------------------


def test_secure_cookies_are_the_default():
    """Only an explicit development setting turns Secure (and the prefix) off."""
    settings = parse_settings({"appserver.secret": SECRET, "sqlalchemy.url": "sqlite://"})
    assert settings.secure_cookies
    assert (settings.session_cookie, settings.remember_cookie) == (
        "__Host-appserver.session",
        "__Host-appserver.remember",
    )


def test_production_rest_login_cookie(production, users):
    response = production.post_json(LOGIN, {"username": "fred", "password": "fred-password"})
    cookies = set_cookies(response)
    assert set(cookies) == {"__Host-appserver.session"}
    cookie = cookies["__Host-appserver.session"]
    assert_production_attributes(cookie)
    assert cookie.attributes["max-age"] == "43200"  # never outlives the server-side expiry
    assert response.json["session"] == {"name": "__Host-appserver.session", "value": cookie.value}
    assert production.get(MYSELF).json["name"] == "fred"


def test_production_form_login_with_remember_me_and_the_csrf_cookie(production, users):
    page, response = form_login(production, remember=True)
    (csrf,) = set_cookies(page).values()
    assert csrf.name == "__Host-csrf"
    assert_production_attributes(csrf)
    cookies = set_cookies(response)
    assert set(cookies) == {"__Host-appserver.session", "__Host-appserver.remember"}
    for cookie in cookies.values():
        assert_production_attributes(cookie)
    assert cookies["__Host-appserver.remember"].attributes["max-age"] == str(14 * 24 * 3600)


def test_production_cookie_names_are_the_only_ones_read(production, users):
    """A cookie without the prefix (which any subdomain could plant) is not the session."""
    response = production.post_json(LOGIN, {"username": "fred", "password": "fred-password"})
    token = response.json["session"]["value"]
    stranger = webtest.TestApp(production.app, extra_environ=HTTPS)
    stranger.set_cookie("appserver.session", token)
    stranger.get(MYSELF, status=401)
    assert stranger.get("/").headers["X-AUSERNAME"] == "anonymous"


def test_production_logout_deletes_with_the_same_attributes(production, users):
    _, login = form_login(production, remember=True)
    issued = set_cookies(login)
    page = production.get("/")
    (logout,) = [form for form in page.forms.values() if form.action == "/logout"]
    response = logout.submit(headers=SAME_ORIGIN, status=303)
    deleted = set_cookies(response)
    assert set(deleted) == set(issued)
    for name, cookie in deleted.items():
        assert cookie.deletes, cookie
        assert_production_attributes(cookie)
        same = ("path", "secure", "httponly", "samesite", "domain")
        assert {k: cookie.attributes.get(k) for k in same} == {
            k: issued[name].attributes.get(k) for k in same
        }


def test_production_rest_logout_deletes_with_the_same_attributes(production, users):
    production.post_json(LOGIN, {"username": "fred", "password": "fred-password"})
    response = production.delete(LOGIN, status=204)
    (cookie,) = [c for c in set_cookies(response).values() if c.name == "__Host-appserver.session"]
    assert cookie.deletes
    assert_production_attributes(cookie)


@pytest.mark.parametrize("value", ["A" * 43, "garbage", "A" * 43 + "." + "B" * 43])
def test_production_stale_cookies_are_deleted_with_the_same_attributes(production, users, value):
    client = production
    for name in ("__Host-appserver.session", "__Host-appserver.remember"):
        client.reset()
        client.set_cookie(name, value)
        cookie = set_cookies(client.get("/"))[name]
        assert cookie.deletes
        assert_production_attributes(cookie)


def test_production_expired_session_and_remember_me_reissue(production, users, clock):
    form_login(production, remember=True)
    clock.advance(1801)  # past the idle timeout: remember-me logs fred back in
    response = production.get("/")
    assert response.headers["X-AUSERNAME"] == "fred"
    cookies = set_cookies(response)
    assert set(cookies) == {"__Host-appserver.session", "__Host-appserver.remember"}
    for cookie in cookies.values():
        assert_production_attributes(cookie)
        assert not cookie.deletes
    assert int(cookies["__Host-appserver.remember"].attributes["max-age"]) == 14 * 24 * 3600 - 1801


def test_production_expired_session_without_remember_me_is_deleted(production, users, clock):
    form_login(production)
    clock.advance(1801)
    assert "__Host-appserver.session" not in set_cookies(production.get(MYSELF, status=401))  # rule 1: kept
    response = production.get("/issues")  # a page: the stale cookie means anonymous, and goes
    cookie = set_cookies(response)["__Host-appserver.session"]
    assert cookie.deletes
    assert_production_attributes(cookie)


def test_production_form_posts_need_a_same_site_origin(production, users):
    """On https Pyramid also checks Origin/Referer; a missing one is a 400 that says so."""
    form = production.get("/login").forms["login-form"]
    form["os_username"], form["os_password"] = "fred", "fred-password"
    fields = dict(form.submit_fields())
    refused = production.post("/login", fields, status=400)  # neither Origin nor Referer
    assert "Origin or Referer" in refused.html.select_one(".error-message").text
    for origin in ("https://evil.example", "http://localhost", "null"):
        refused = production.post("/login", fields, headers={"Origin": origin}, status=400)
        assert "Origin checking failed" in refused.html.select_one(".error-message").text
    production.post("/login", fields, headers={"Referer": "https://localhost/login"}, status=303)


# --- development -----------------------------------------------------------------------------


def test_development_never_sets_secure(testapp, users, clock):
    cookies: dict[str, SetCookie] = {}
    page, response = form_login(testapp, remember=True, headers={})
    cookies.update(set_cookies(page))
    cookies.update(set_cookies(response))
    assert set(cookies) == {"csrf", "appserver.session", "appserver.remember"}
    rest = webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)
    cookies["rest login"] = set_cookies(
        rest.post_json(LOGIN, {"username": "alice", "password": "alice-password"})
    )["appserver.session"]
    for cookie in cookies.values():
        assert_development_attributes(cookie)
    # Deletions too: a stale cookie, and logout.
    stale = webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)
    stale.set_cookie("appserver.session", "A" * 43)
    deletion = set_cookies(stale.get("/"))["appserver.session"]
    assert deletion.deletes
    assert_development_attributes(deletion)
    (logout,) = [form for form in testapp.get("/").forms.values() if form.action == "/logout"]
    for cookie in set_cookies(logout.submit(status=303)).values():
        assert cookie.deletes
        assert_development_attributes(cookie)
