"""The account page: sessions, log out others, change password."""
from __future__ import annotations

import base64

import pytest
import webtest
from sqlalchemy import select

from appserver.models import RememberToken, UserSession

from .support import confirm_websudo


def browser(testapp, username="fred", password=None, remember=False, agent="Browser A"):
    client = webtest.TestApp(testapp.app, extra_environ={**testapp.extra_environ, "HTTP_USER_AGENT": agent})
    form = client.get("/login").forms["login-form"]
    form["os_username"] = username
    form["os_password"] = password or f"{username}-password"
    form["os_cookie"] = remember
    form.submit(status=303)
    return client


def basic(username, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def test_account_lists_sessions_and_marks_the_current_one(testapp, users):
    laptop = browser(testapp, agent="Laptop")
    browser(testapp, agent="Phone")
    page = laptop.get("/account")
    rows = page.html.select("#sessions tbody tr")
    assert len(rows) == 2
    current = page.html.select("#sessions tr.current")
    assert len(current) == 1 and "Laptop" in current[0].text
    assert "127.0.0.1" in current[0].text
    assert page.html.select_one("#login-count").text == "2"


def test_revoke_one_session(testapp, users):
    laptop, phone = browser(testapp, agent="Laptop"), browser(testapp, agent="Phone")
    page = laptop.get("/account")
    phone_row = [r for r in page.html.select("#sessions tbody tr") if "Phone" in r.text][0]
    action = f"/account/sessions/{phone_row['data-session-id']}/revoke"
    (form,) = [f for f in page.forms.values() if f.action == action]
    assert "The session has been logged out" in form.submit().follow().text
    phone.get("/rest/api/2/myself", status=401)
    laptop.get("/rest/api/2/myself", status=200)


def test_logging_out_a_browser_that_rotated_its_session_meanwhile_ends_the_new_one(testapp, users):
    """The laptop's page names the phone's session; the phone then confirms WebSudo, which
    replaces its session with an elevated one. "Log out" on the laptop's page ended the old
    session only, and said so, while the phone went on, elevated (an outside review)."""
    laptop, phone = browser(testapp, "admin", agent="Laptop"), browser(testapp, "admin", agent="Phone")
    page = laptop.get("/account")
    phone_row = [r for r in page.html.select("#sessions tbody tr") if "Phone" in r.text][0]
    confirm_websudo(phone, "admin-password")  # a new session for the phone
    phone.get("/admin/users", status=200)
    action = f"/account/sessions/{phone_row['data-session-id']}/revoke"
    (form,) = [f for f in page.forms.values() if f.action == action]
    form.submit().follow()
    phone.get("/rest/api/2/myself", status=401)
    laptop.get("/rest/api/2/myself", status=200)


def test_logging_out_this_browsers_own_older_session_id_says_it_logged_out(testapp, users):
    """An id this browser had before a rotation (a page from before it) leads to the session
    it has now: the answer said another browser was logged out, kept the cookie, and the next
    request was a stale cookie's 401 (an adversarial review). It is this browser's log-out."""
    laptop = browser(testapp, agent="Laptop")
    old_id = laptop.get("/account").html.select_one("#sessions tr.current")["data-session-id"]
    page = laptop.get("/account")
    token = page.forms["revoke-others-form"]["csrf_token"].value
    page.forms["revoke-others-form"].submit(status=303)  # rotates: a new session for the laptop
    token = laptop.get("/account").forms["revoke-others-form"]["csrf_token"].value
    answer = laptop.post(f"/account/sessions/{old_id}/revoke", {"csrf_token": token}, status=303)
    assert answer.location.endswith("/?notice=logged-out")
    assert "appserver.session" not in laptop.cookies
    laptop.get("/rest/api/2/myself", status=401)


def test_a_stale_copy_of_a_replaced_cookie_does_not_reach_the_new_session(testapp, users):
    """A login revokes the session its request presented (no fixation), and follows the
    rotations of a session it was served by: never those of a cookie that was already stale
    when it came, or a copy taken before a rotation could log that browser out."""
    phone = browser(testapp, "admin", agent="Phone")
    copy = phone.cookies["appserver.session"]
    confirm_websudo(phone, "admin-password")  # the copy is stale from here on
    thief = webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)
    thief.set_cookie("appserver.session", copy)
    thief.post_json("/rest/auth/1/session", {"username": "alice", "password": "alice-password"}, status=200)
    phone.get("/admin/users", status=200)


@pytest.mark.parametrize("rotated", [False, True], ids=["logged in", "back by remember-me"])
def test_revoking_one_session_ends_that_browsers_remembered_login_too(testapp, users, clock, rotated):
    """Logged out from the laptop, the phone's remember-me cookie would log it straight back
    in: its series goes with the session it last started (at the login, or at a rotation)."""
    laptop = browser(testapp, remember=True, agent="Laptop")
    phone = browser(testapp, remember=True, agent="Phone")
    if rotated:
        clock.advance(1800)  # both sessions idle out; each comes back by its remembered login
        phone.get("/rest/api/2/myself", status=200)
    page = laptop.get("/account")
    phone_row = [r for r in page.html.select("#sessions tbody tr") if "Phone" in r.text][0]
    action = f"/account/sessions/{phone_row['data-session-id']}/revoke"
    (form,) = [f for f in page.forms.values() if f.action == action]
    form.submit().follow()
    phone.get("/rest/api/2/myself", status=401)
    phone.get("/account", status=303)  # to the login page: its remembered login is gone too
    clock.advance(1800)
    assert laptop.get("/rest/api/2/myself").json["name"] == "fred"  # the laptop's stays


def test_revoking_another_users_session_does_nothing(testapp, users, app_request):
    alice = browser(testapp, "alice")
    fred = browser(testapp, "fred")
    alice_session = app_request.session_store.active_sessions(users["alice"].id)[0]
    token = fred.get("/account").forms["revoke-others-form"]["csrf_token"].value
    answers = [fred.post(f"/account/sessions/{session_id}/revoke", {"csrf_token": token}, status=303).follow()
               for session_id in (alice_session.id, 999999)]
    alice.get("/rest/api/2/myself", status=200)
    # The same answer for another user's session and for none at all; it said "logged out".
    assert [page.html.select_one(".notice").text.strip() for page in answers] == [
        "You have no such session: nothing was logged out."] * 2


def test_log_out_all_other_sessions(testapp, users):
    laptop, phone, tablet = (browser(testapp, agent=a) for a in ("Laptop", "Phone", "Tablet"))
    laptop.get("/account").forms["revoke-others-form"].submit().follow()
    phone.get("/rest/api/2/myself", status=401)
    tablet.get("/rest/api/2/myself", status=401)
    assert len(laptop.get("/account").html.select("#sessions tbody tr")) == 1


def test_log_out_all_other_sessions_keeps_the_logins_absolute_lifetime(testapp, users, clock):
    """Its new session ends when the login's would have: repeated, it kept a session (a
    stolen one too) alive past the 12 hours, with no password asked (an outside review)."""
    laptop = browser(testapp, agent="Laptop")
    for hour in range(1, 12):
        for _ in range(3):  # in use: the idle timeout never ends it
            clock.advance(1200)
            laptop.get("/rest/api/2/myself", status=200)
        response = laptop.get("/account").forms["revoke-others-form"].submit(status=303)
        (cookie,) = [v for k, v in response.headerlist if k == "Set-Cookie" and "session" in v.split("=", 1)[0]]
        assert f"Max-Age={43200 - hour * 3600};" in cookie
    for _ in range(2):
        clock.advance(1200)
        laptop.get("/rest/api/2/myself", status=200)
    clock.advance(1199)
    laptop.get("/rest/api/2/myself", status=200)
    clock.advance(1)  # 12 hours after the login
    laptop.get("/rest/api/2/myself", status=401)


def test_log_out_all_other_sessions_ends_their_remembered_logins_and_keeps_this_ones(testapp, users, clock):
    """Another browser's remember-me cookie would log it straight back in, silently: "log
    out all other sessions" ends the other series too, and keeps this browser's."""
    laptop, phone = (browser(testapp, remember=True, agent=a) for a in ("Laptop", "Phone"))
    laptop.get("/account").forms["revoke-others-form"].submit().follow()
    phone.get("/rest/api/2/myself", status=401)
    phone.get("/account", status=303)  # to the login page: its remembered login is gone too
    clock.advance(1800)  # the laptop's session idles out; its remembered login stays
    assert laptop.get("/rest/api/2/myself").json["name"] == "fred"


def change_password(client, current, new, confirm=None, status=303):
    form = client.get("/account").forms["password-form"]
    form["current_password"] = current
    form["new_password"] = new
    form["confirm_password"] = confirm if confirm is not None else new
    return form.submit(status=status)


def test_password_change_revokes_others_keeps_this_browser_under_a_new_token(testapp, users, dbsession):
    laptop = browser(testapp, agent="Laptop")
    phone = browser(testapp, agent="Phone", remember=True)
    old_token = laptop.cookies["appserver.session"]
    page = change_password(laptop, "fred-password", "a-new-password").follow()
    assert "Your password has been changed" in page.text
    assert laptop.cookies["appserver.session"] != old_token
    laptop.get("/rest/api/2/myself", status=200)
    # the old token is dead, so is the other browser and its remember-me
    replay = webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)
    replay.set_cookie("appserver.session", old_token)
    replay.get("/rest/api/2/myself", status=401)
    phone.get("/rest/api/2/myself", status=401)
    assert dbsession.scalar(select(RememberToken).where(RememberToken.revoked_at.is_(None))) is None
    # Basic with the old password fails at once; the new one works
    testapp.get("/rest/api/2/myself", headers=basic("fred", "fred-password"), status=401)
    testapp.get("/rest/api/2/myself", headers=basic("fred", "a-new-password"), status=200)


def test_password_change_needs_the_current_password_and_a_good_new_one(testapp, users):
    laptop = browser(testapp)
    wrong = change_password(laptop, "not-my-password", "a-new-password", status=400)
    assert "current password is not correct" in wrong.html.select_one("#password-error").text
    mismatch = change_password(laptop, "fred-password", "a-new-password", "another-one", status=400)
    assert "do not match" in mismatch.text
    short = change_password(laptop, "fred-password", "short", status=400)
    assert "at least 12 characters" in short.text
    testapp.get("/rest/api/2/myself", headers=basic("fred", "fred-password"), status=200)


def test_account_needs_a_login(testapp):
    response = testapp.get("/account", status=303)
    assert response.location == "http://localhost/login?os_destination=%2Faccount"


def test_deactivation_revokes_everything(testapp, users, app_request):
    from appserver.security import accounts

    fred = browser(testapp, remember=True)
    accounts.set_active(app_request, users["fred"], False)
    app_request.dbsession.flush()
    fred.get("/rest/api/2/myself", status=401)
    assert app_request.dbsession.scalar(
        select(UserSession).where(UserSession.revoked_at.is_(None))
    ) is None


def test_wrong_current_passwords_count_towards_the_lock_out(testapp, users, app):
    """A borrowed session cannot guess the password freely: the check counts like a login."""
    laptop = browser(testapp)
    for attempt in range(3):
        change_password(laptop, f"guess-{attempt}", "a-new-password", status=400)
    hashes = app.registry.passwords.hash_count
    locked = change_password(laptop, "fred-password", "a-new-password", status=403)
    assert app.registry.passwords.hash_count == hashes, "the password was checked during the cool-down"
    assert "Too many failed password attempts" in locked.html.select_one("#password-error").text
    assert locked.headers["Retry-After"] == "60"
    rest_login = testapp.post_json(
        "/rest/auth/1/session", {"username": "fred", "password": "fred-password"}, status=403
    )
    assert rest_login.headers["X-Seraph-LoginReason"] == "AUTHENTICATION_DENIED"


# --- PUT /rest/api/2/myself/password (Jira's resource) ---------------------------------------

PASSWORD = "/rest/api/2/myself/password"


def rest_client(testapp, username="fred"):
    client = webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)
    client.post_json("/rest/auth/1/session", {"username": username, "password": f"{username}-password"})
    return client


def test_rest_password_change_keeps_this_client_under_a_new_token(testapp, users):
    client, other = rest_client(testapp), rest_client(testapp)
    old_token = client.cookies["appserver.session"]
    response = client.put_json(PASSWORD, {"currentPassword": "fred-password", "password": "a-new-password"}, status=204)
    assert response.body == b""
    assert client.cookies["appserver.session"] != old_token
    assert client.get("/rest/api/2/myself").json["name"] == "fred"
    other.get("/rest/api/2/myself", status=401)  # every other session is revoked
    testapp.get("/rest/api/2/myself", headers=basic("fred", "fred-password"), status=401)
    testapp.get("/rest/api/2/myself", headers=basic("fred", "a-new-password"), status=200)


def test_rest_password_change_with_basic_credentials(testapp, users):
    testapp.put_json(
        "/rest/api/latest/myself/password", {"currentPassword": "fred-password", "password": "a-new-password"},
        headers=basic("fred", "fred-password"), status=204,
    )
    testapp.get("/rest/api/2/myself", headers=basic("fred", "a-new-password"), status=200)


@pytest.mark.parametrize(
    "body, status, errors",
    [
        ({"currentPassword": "wrong-password", "password": "a-new-password"}, 403,
         {"currentPassword": "Your current password is not correct."}),
        ({"currentPassword": "fred-password", "password": "short"}, 400,
         {"password": "Choose a password of at least 12 characters."}),
        ({"password": "a-new-password"}, 400, {"currentPassword": "currentPassword is required"}),
        ({"currentPassword": "fred-password", "password": 12345678}, 400,
         {"password": "password must be a string"}),
        ({"currentPassword": "fred-password", "password": ""}, 400, {"password": "password must not be empty"}),
    ],
)
def test_rest_password_change_errors_are_jira_shaped(testapp, users, body, status, errors):
    client = rest_client(testapp)
    response = client.put_json(PASSWORD, body, status=status)
    assert response.json["errors"] == errors
    assert isinstance(response.json["errorMessages"], list)
    client.get("/rest/api/2/myself", status=200)  # still logged in
    testapp.get("/rest/api/2/myself", headers=basic("fred", "fred-password"), status=200)  # unchanged


def test_rest_password_change_needs_a_login_and_a_json_body(testapp, users):
    anonymous = testapp.put_json(PASSWORD, {"currentPassword": "x", "password": "a-new-password"}, status=401)
    assert anonymous.json["errorMessages"]
    form = rest_client(testapp).put(PASSWORD, {"currentPassword": "fred-password", "password": "new-password-1"}, status=415)
    assert "application/json" in form.json["errorMessages"][0]


def test_rest_password_change_during_a_lock_out_is_denied(testapp, users):
    client = rest_client(testapp)
    for attempt in range(3):
        client.put_json(PASSWORD, {"currentPassword": f"guess-{attempt}", "password": "a-new-password"}, status=403)
    denied = client.put_json(PASSWORD, {"currentPassword": "fred-password", "password": "a-new-password"}, status=403)
    assert denied.headers["X-Seraph-LoginReason"] == "AUTHENTICATION_DENIED"
    assert denied.headers["Retry-After"] == "60"
    assert denied.headers["X-Authentication-Denied-Reason"].startswith("TOO_MANY_FAILED_LOGINS; login-url=")


@pytest.mark.parametrize("action", ["/account/sessions/revoke-others", "/account/sessions/1/revoke",
                                    "/account/tokens/1/revoke", "/websudo/drop"])
def test_a_form_sent_after_the_session_expired_leads_back_to_its_page(testapp, users, clock, action):
    """The login after an expired session's POST went to the POST-only address: a 405 page
    (an outside review). It leads back to the form's page, and says the form was not
    carried out."""
    laptop = browser(testapp)
    token = laptop.get("/account").forms["revoke-others-form"]["csrf_token"].value
    clock.advance(1801)  # idle for longer than the idle timeout
    sent = laptop.post(action, {"csrf_token": token}, headers={"Referer": "http://localhost/account"}, status=303)
    assert sent.location == "http://localhost/login?os_destination=%2Faccount&unsent=1&expired=1"
    login = sent.follow()
    assert "was not carried out" in login.html.select_one("#form-unsent").text
    form = login.forms["login-form"]
    form["os_username"], form["os_password"] = "fred", "fred-password"
    assert form.submit(status=303).location == "http://localhost/account"
    # A page that demanded Basic (os_authType=basic): no login by form meets that demand.
    laptop = browser(testapp)
    clock.advance(1801)
    sent = laptop.post(action, {"csrf_token": token}, status=303,
                       headers={"Referer": "http://localhost/account?os_authType=basic&x=1"})
    form = sent.follow().forms["login-form"]
    form["os_username"], form["os_password"] = "fred", "fred-password"
    assert form.submit(status=303).location == "http://localhost/account?x=1"
    # From another site, or with no Referer: home, never the POST-only address.
    laptop.reset()
    for referer in ({"Referer": "https://evil.example/account"}, {}):
        sent = laptop.post(action, {"csrf_token": "x"}, headers=referer, status=303)
        assert sent.location == "http://localhost/login?os_destination=%2F&unsent=1"
