"""CSRF and XSRF (issue 5; session-security.md items 4 and 19; atlassian-rest-auth.md section 4).

Every HTML form that changes state (login included: login CSRF) refuses a POST without its
session-bound ``csrf_token`` with a 400 page that says what to do, and accepts the real form.
Under ``/rest``, a cookie-authenticated POST whose body a cross-site form could have sent
needs ``X-Atlassian-Token: no-check``; JSON bodies and Basic credentials pass. GET never
changes state.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
import webtest
from sqlalchemy import func, select

from appserver.models import PersonalToken, RememberToken, User, UserSession

from .support import confirm_websudo

CSRF_ADVICE = "Go back, reload the page and try again."
XSRF_ADVICE = "X-Atlassian-Token: no-check"
LOGIN = "/rest/auth/1/session"
SEARCH = "/rest/api/2/search"


def browser(testapp) -> webtest.TestApp:
    """Another browser: same app, its own cookie jar."""
    return webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)


def log_in(testapp, username: str) -> webtest.TestResponse:
    """Log in through the real form (CSRF token and all); an administrator also confirms the
    password at the WebSudo prompt, through its real form too."""
    form = testapp.get("/login").forms["login-form"]
    form["os_username"], form["os_password"] = username, f"{username}-password"
    response = form.submit(status=303)
    if username == "admin":
        confirm_websudo(testapp, "admin-password")
    return response


def form_for(page, action: str) -> webtest.forms.Form:
    # An action may end in a fragment (the account page's forms answer at their own card).
    forms = {id(form): form for form in page.forms.values() if form.action.split("#")[0] == action}
    assert len(forms) == 1, f"expected one form posting to {action}, found {len(forms)}"
    return next(iter(forms.values()))


def basic(username: str, password: str) -> dict[str, str]:
    return {
        "Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    }


def assert_csrf_refusal(response) -> None:
    assert response.status_int == 400
    assert response.content_type == "text/html"
    message = response.html.select_one(".error-message").text
    assert "expired or was sent from another site" in message and CSRF_ADVICE in message
    assert response.html.select_one(".actions a")["href"] == "/"


def state(dbsession) -> tuple:
    """What a forged request could change: accounts, sessions (and their WebSudo elevation),
    remember-me tokens, personal access tokens."""
    dbsession.expire_all()
    return (
        dbsession.execute(
            select(
                User.id,
                User.password_hash,
                User.active,
                User.locked_until,
                User.current_failed_logins,
            ).order_by(User.id)
        ).all(),
        dbsession.execute(
            select(UserSession.id, UserSession.revoked_at, UserSession.websudo_at).order_by(UserSession.id)
        ).all(),
        dbsession.execute(
            select(RememberToken.id, RememberToken.revoked_at).order_by(RememberToken.id)
        ).all(),
        dbsession.execute(
            select(PersonalToken.id, PersonalToken.revoked_at).order_by(PersonalToken.id)
        ).all(),
    )


# --- the HTML forms ----------------------------------------------------------------------


@dataclass
class FormCase:
    """How to reach one state-changing form as its rightful user, and what it changes."""

    name: str
    page: str  # "" for the action's own URL (a confirmation page)
    action: Callable[[dict], str]
    fill: dict[str, str]
    as_user: str = "fred"
    status: int = 303  # what the real form answers (creating a token shows the page: 200)


FORMS = [
    FormCase("logout", "/account", lambda ctx: "/logout", {}),
    FormCase(
        "change password",
        "/account",
        lambda ctx: "/account/password",
        {
            "current_password": "fred-password",
            "new_password": "brand-new-password",
            "confirm_password": "brand-new-password",
        },
    ),
    FormCase(
        "revoke one session",
        "/account",
        lambda ctx: f"/account/sessions/{ctx['other_session'].id}/revoke",
        {},
    ),
    FormCase(
        "log out all other sessions", "/account", lambda ctx: "/account/sessions/revoke-others", {}
    ),
    FormCase(
        "create user",
        "/admin/users",
        lambda ctx: "/admin/users",
        {"username": "newcomer", "password": "newcomer-password"},
        as_user="admin",
    ),
    *(
        FormCase(
            f"admin: {action}",
            # Actions that take something away are asked for on a confirmation page.
            "" if action in ("deactivate", "revoke-sessions", "revoke-tokens") else "/admin/users",
            lambda ctx, action=action: f"/admin/users/{ctx['users']['alice'].id}/{action}",
            {},
            as_user="admin",
        )
        for action in ("deactivate", "unlock", "revoke-sessions", "revoke-tokens")
    ),
    FormCase(
        "create a personal access token",
        "/account",
        lambda ctx: "/account/tokens",
        {"name": "forged", "expiration_days": "30"},
        status=200,
    ),
    FormCase(
        "revoke a personal access token",
        "/account",
        lambda ctx: f"/account/tokens/{ctx['fred_token'].id}/revoke",
        {},
    ),
    FormCase("drop administrator access", "/admin/users", lambda ctx: "/websudo/drop", {}, as_user="admin"),
]


@pytest.fixture
def context(testapp, users, dbsession, app_request, clock) -> dict[str, Any]:
    """alice has a live session elsewhere, is locked out and has a personal access token (so
    every admin action does something); fred has a second session and a token (so revoking
    one does something)."""
    from appserver.security import personal_tokens

    alice_token = personal_tokens.create(app_request, users["alice"], "alice's", 30).token
    fred_token = personal_tokens.create(app_request, users["fred"], "fred's", 30).token
    elsewhere = browser(testapp)
    log_in(elsewhere, "alice")
    other = browser(testapp)
    log_in(other, "fred")
    for _ in range(3):
        browser(testapp).post_json(LOGIN, {"username": "alice", "password": "wrong"}, status=401)
    fred_sessions = dbsession.scalars(
        select(UserSession).where(UserSession.user_id == users["fred"].id).order_by(UserSession.id)
    ).all()
    return {
        "users": users,
        "other_session": fred_sessions[-1],
        "alice_browser": elsewhere,
        "fred_token": fred_token,
        "alice_token": alice_token,
    }


@pytest.mark.parametrize("case", FORMS, ids=[case.name for case in FORMS])
def test_forms_refuse_a_post_without_the_right_token(testapp, context, dbsession, case):
    log_in(testapp, case.as_user)
    action = case.action(context)
    page = testapp.get(case.page or action)
    real_token = form_for(page, action)["csrf_token"].value
    before = state(dbsession)
    attempts = [
        {},  # no token at all
        {"csrf_token": ""},
        {"csrf_token": "forged"},
        {
            "csrf_token": real_token[:-1] + ("0" if real_token[-1] != "0" else "1")
        },  # one character off
        {"csrf_token": real_token + "x"},
    ]
    for extra in attempts:
        assert_csrf_refusal(testapp.post(action, {**case.fill, **extra}, status=400))
    # A wrong token in the header does not help either, nor does one in the query string.
    assert_csrf_refusal(
        testapp.post(action, case.fill, headers={"X-CSRF-Token": "forged"}, status=400)
    )
    assert_csrf_refusal(testapp.post(f"{action}?csrf_token={real_token}", case.fill, status=400))
    assert state(dbsession) == before, f"a forged {case.name} changed something"


@pytest.mark.parametrize("case", FORMS, ids=[case.name for case in FORMS])
def test_forms_refuse_the_token_of_another_session(testapp, context, dbsession, case):
    log_in(testapp, case.as_user)
    action = case.action(context)
    # The attacker's own, perfectly valid token, from their own session (alice) ...
    stolen = form_for(context["alice_browser"].get("/account"), "/account/sessions/revoke-others")[
        "csrf_token"
    ].value
    # ... and the victim's token from before they logged in (the anonymous login form).
    anonymous = browser(testapp).get("/login").forms["login-form"]["csrf_token"].value
    before = state(dbsession)
    for token in (stolen, anonymous):
        assert_csrf_refusal(testapp.post(action, {**case.fill, "csrf_token": token}, status=400))
    assert state(dbsession) == before


@pytest.mark.parametrize("case", FORMS, ids=[case.name for case in FORMS])
def test_the_real_form_is_accepted(testapp, context, dbsession, case):
    log_in(testapp, case.as_user)
    form = form_for(testapp.get(case.page or case.action(context)), case.action(context))
    for name, value in case.fill.items():
        form[name] = value
    before = state(dbsession)
    response = form.submit()
    assert response.status_int == case.status, response.text[:2000]
    assert state(dbsession) != before, f"{case.name} did nothing"


def test_the_token_may_also_come_in_the_header(testapp, context, dbsession):
    log_in(testapp, "fred")
    token = form_for(testapp.get("/account"), "/logout")["csrf_token"].value
    testapp.post("/account/sessions/revoke-others", headers={"X-CSRF-Token": token}, status=303)
    revoked_at = select(UserSession.revoked_at).where(UserSession.id == context["other_session"].id)
    assert dbsession.scalar(revoked_at) is not None


# --- login CSRF ----------------------------------------------------------------------------


def test_login_refuses_a_post_without_the_token(testapp, users, dbsession):
    before = state(dbsession)
    credentials = {"os_username": "fred", "os_password": "fred-password"}
    assert_csrf_refusal(testapp.post("/login", credentials, status=400))  # never saw the form
    testapp.get("/login")  # now the browser holds the anonymous CSRF cookie ...
    assert_csrf_refusal(testapp.post("/login", credentials, status=400))  # ... but sends no token
    assert_csrf_refusal(testapp.post("/login", {**credentials, "csrf_token": "forged"}, status=400))
    assert state(dbsession) == before, "a forged login created a session"


def test_login_refuses_an_attackers_token_without_the_matching_cookie(testapp, users, dbsession):
    """Login CSRF: the attacker can get a token from the login page, but not plant the
    matching cookie in the victim's browser."""
    attacker_token = browser(testapp).get("/login").forms["login-form"]["csrf_token"].value
    testapp.get("/login")  # the victim's own cookie holds a different token
    before = state(dbsession)
    response = testapp.post(
        "/login",
        {"os_username": "fred", "os_password": "fred-password", "csrf_token": attacker_token},
        status=400,
    )
    assert_csrf_refusal(response)
    assert state(dbsession) == before


def test_a_browser_sending_basic_needs_the_token_its_page_gave(testapp, users, dbsession):
    """A browser sends cached Basic credentials to a forged form too. The double-submit pair
    alone (cookie ``csrf=x``, field ``x``), which an attacker can plant where cookies can be
    set (any port of 127.0.0.1 in development), revoked an administrator's victim's sessions
    (an outside review). The token of a Basic request is bound to the account by the secret."""
    admin = basic("admin", "admin-password")
    victim = browser(testapp)
    log_in(victim, "fred")
    fred_id = dbsession.scalar(select(User.id).where(User.username == "fred"))
    forged = browser(testapp)
    forged.set_cookie("csrf", "x")
    refused = forged.post(f"/admin/users/{fred_id}/revoke-sessions", {"csrf_token": "x", "confirm": "yes"},
                          headers=admin, status=400)
    assert_csrf_refusal(refused)
    assert victim.get("/rest/api/2/myself").json["name"] == "fred"
    # The page's own form, fetched with Basic, works: its token and the cookie it set.
    real = browser(testapp)
    page = real.get("/admin/users", headers=admin)
    confirm = form_for(page, f"/admin/users/{fred_id}/revoke-sessions").submit(headers=admin, status=200)
    form_for(confirm, f"/admin/users/{fred_id}/revoke-sessions").submit(headers=admin, status=303)
    victim.get("/rest/api/2/myself", status=401)


def test_the_real_login_form_is_accepted(testapp, users):
    response = log_in(testapp, "fred")
    assert response.headers["X-Seraph-LoginReason"] == "OK"
    assert testapp.get("/rest/api/2/myself").json["name"] == "fred"


def test_the_token_changes_on_login_and_is_bound_to_the_session(testapp, users, dbsession):
    def token(page: str = "/") -> str:
        response = testapp.get(page)
        forms = [f for f in response.forms.values() if "csrf_token" in f.fields]
        return forms[0]["csrf_token"].value

    anonymous = token("/login")
    log_in(testapp, "fred")
    first = token()
    assert first != anonymous
    assert token("/account") == first  # stable within the session
    # A second login (a new session) gets a new token; the old one is no longer accepted.
    log_in(testapp, "fred")
    second = token()
    assert second not in (first, anonymous)
    assert_csrf_refusal(
        testapp.post("/account/sessions/revoke-others", {"csrf_token": first}, status=400)
    )
    # Another browser of the same user has its own session, so its own token.
    other = browser(testapp)
    log_in(other, "fred")
    assert form_for(other.get("/account"), "/logout")["csrf_token"].value not in (first, second)
    testapp.post("/account/sessions/revoke-others", {"csrf_token": second}, status=303)


def test_the_token_is_not_the_session_token(testapp, users):
    log_in(testapp, "fred")
    session = testapp.cookies["appserver.session"]
    csrf = form_for(testapp.get("/"), "/logout")["csrf_token"].value
    assert session not in csrf and csrf not in session


# --- REST: Atlassian's XSRF rule ------------------------------------------------------------

BROWSER_POSTABLE = {
    "form-encoded": ("application/x-www-form-urlencoded", b"jql=project%3DDEMO"),
    "multipart": (
        "multipart/form-data; boundary=XX",
        b'--XX\r\nContent-Disposition: form-data; name="jql"\r\n\r\nproject=DEMO\r\n--XX--\r\n',
    ),
    "text/plain": ("text/plain", b'{"jql": "project = DEMO"}'),
    "text/plain with a charset": ("text/plain; charset=utf-8", b'{"jql": "project = DEMO"}'),
    "Text/Plain, mixed case": ("Text/Plain", b'{"jql": "project = DEMO"}'),
    "no content type": (None, b'{"jql": "project = DEMO"}'),
    "empty content type": ("", b""),
}


def rest_post(testapp, path: str, content_type: str | None, body: bytes, headers=None, status="*"):
    request = webtest.TestRequest.blank(path, method="POST", body=body, headers=headers or {})
    if content_type is None:
        request.environ.pop("CONTENT_TYPE", None)
    else:
        request.environ["CONTENT_TYPE"] = content_type
    return testapp.do_request(request, status=status)


@pytest.fixture
def cookie_client(testapp, users):
    testapp.post_json(LOGIN, {"username": "fred", "password": "fred-password"})
    return testapp


def assert_xsrf_refusal(response) -> None:
    assert response.status_int == 403
    assert response.content_type == "application/json"
    assert response.json["errors"] == {}
    (message,) = response.json["errorMessages"]
    assert message.startswith("XSRF check failed") and XSRF_ADVICE in message


@pytest.mark.parametrize("kind", BROWSER_POSTABLE, ids=list(BROWSER_POSTABLE))
def test_cookie_authenticated_browser_postable_bodies_need_the_header(
    cookie_client, dbsession, kind
):
    content_type, body = BROWSER_POSTABLE[kind]
    before = state(dbsession)
    # Whatever the resource: the session resource (a forged re-login), a search, a GET-only URL.
    for path in (SEARCH, LOGIN, "/rest/api/2/myself"):
        assert_xsrf_refusal(rest_post(cookie_client, path, content_type, body))
        for wrong in ("", "check", "no-check-please", "true"):
            assert_xsrf_refusal(
                rest_post(cookie_client, path, content_type, body, {"X-Atlassian-Token": wrong})
            )
    assert state(dbsession) == before


@pytest.mark.parametrize("kind", BROWSER_POSTABLE, ids=list(BROWSER_POSTABLE))
def test_the_no_check_header_lets_them_through(cookie_client, kind):
    content_type, body = BROWSER_POSTABLE[kind]
    for token in ("no-check", "nocheck", "NO-CHECK", " no-check "):  # nocheck: the legacy spelling
        response = rest_post(
            cookie_client, SEARCH, content_type, body, {"X-Atlassian-Token": token}
        )
        # Past the XSRF rule, the resource itself answers: it wants JSON.
        assert response.status_int == 415
        assert "Content-Type: application/json" in response.json["errorMessages"][0]


def test_json_bodies_pass_without_the_header(cookie_client):
    response = cookie_client.post_json(SEARCH, {"jql": "", "maxResults": 1})
    assert response.status_int == 200 and "issues" in response.json
    relogin = cookie_client.post_json(LOGIN, {"username": "alice", "password": "alice-password"})
    assert relogin.json["session"]["value"]


@pytest.mark.parametrize("kind", BROWSER_POSTABLE, ids=list(BROWSER_POSTABLE))
def test_basic_authenticated_posts_pass(testapp, users, kind):
    content_type, body = BROWSER_POSTABLE[kind]
    response = rest_post(testapp, SEARCH, content_type, body, basic("fred", "fred-password"))
    assert response.status_int == 415  # the resource's answer, not the XSRF rule's
    # Basic wins over a cookie sent alongside (a forged form cannot add Basic credentials).
    testapp.post_json(LOGIN, {"username": "alice", "password": "alice-password"})
    response = rest_post(testapp, SEARCH, content_type, body, basic("fred", "fred-password"))
    assert response.status_int == 415
    assert response.headers["X-AUSERNAME"] == "fred"


@pytest.mark.parametrize("kind", BROWSER_POSTABLE, ids=list(BROWSER_POSTABLE))
def test_anonymous_posts_are_not_subject_to_the_rule(testapp, users, kind):
    content_type, body = BROWSER_POSTABLE[kind]
    assert rest_post(testapp, SEARCH, content_type, body).status_int == 415


def test_the_rule_applies_to_posts_only(cookie_client):
    # Cross-site forms can only GET or POST; a JSON-less DELETE needs CORS preflight anyway.
    assert cookie_client.get(SEARCH, {"jql": ""}).status_int == 200
    cookie_client.delete(LOGIN, status=204)


# --- GET never changes state -----------------------------------------------------------------


def test_get_logout_is_405_and_the_session_survives(testapp, users):
    log_in(testapp, "fred")
    response = testapp.get("/logout", status=405)
    assert response.content_type == "text/html"
    assert "GET is not allowed here" in response.text
    assert testapp.get("/rest/api/2/myself").json["name"] == "fred"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_get_on_state_changing_urls_does_nothing(testapp, context, dbsession, method):
    users = context["users"]
    log_in(testapp, "admin")
    admin_session = dbsession.scalars(
        select(UserSession).where(UserSession.user_id == users["admin"].id, UserSession.revoked_at.is_(None))
    ).one()
    query = {
        "current_password": "admin-password",
        "new_password": "brand-new-password",
        "confirm_password": "brand-new-password",
        "username": "newcomer",
        "password": "newcomer-password",
        "os_username": "fred",
        "os_password": "fred-password",
    }
    urls = [
        "/logout",
        "/account/password",
        f"/account/sessions/{admin_session.id}/revoke",
        "/account/sessions/revoke-others",
        "/admin/users",
        "/login",
        LOGIN,
        *(
            f"/admin/users/{users['alice'].id}/{action}"
            for action in ("deactivate", "activate", "unlock", "revoke-sessions", "revoke-tokens")
        ),
        "/account/tokens",
        f"/account/tokens/{context['fred_token'].id}/revoke",
        "/websudo/drop",
    ]
    before = state(dbsession)
    for url in urls:
        response = testapp.request(f"{url}?{urlencode(query)}", method=method, expect_errors=True)
        # 303: a form's address leads to the form (the account page's password and tokens).
        assert response.status_int in (200, 303, 401, 405), (url, response.status)
    assert state(dbsession) == before
    assert dbsession.scalar(select(func.count()).select_from(User)) == 3
    assert testapp.get("/rest/api/2/myself").json["name"] == "admin"


def test_get_on_every_route_changes_no_account_session_or_token(testapp, context, dbsession):
    log_in(testapp, "admin")
    from .test_hostile_input import endpoints

    before = state(dbsession)
    for path in endpoints(testapp.app):
        response = testapp.get(path, expect_errors=True)
        assert response.status_int < 500, (path, response.status)
    assert state(dbsession) == before


def test_a_logged_in_form_post_with_the_anonymous_csrf_token_is_refused(testapp, users):
    """Once logged in, only the session-bound token counts: the anonymous double-submit token
    (still in its cookie, and known to anything that saw the login page) is refused."""
    anonymous = testapp.get("/login").forms["login-form"]["csrf_token"].value
    log_in(testapp, "fred")
    assert anonymous in testapp.cookies.values()  # the browser still sends it
    assert_csrf_refusal(testapp.post("/logout", {"csrf_token": anonymous}, status=400))
    assert testapp.get("/rest/api/2/myself").json["name"] == "fred"
