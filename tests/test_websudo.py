"""WebSudo (issue 12): an administrator's cookie session confirms its password before admin
work, within a rolling window; REST gets Jira's 401; Basic and Bearer are exempt; a wrong
password counts towards the lock-out; the elevation lives on the server-side session."""
from __future__ import annotations

import base64
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import webtest
from sqlalchemy import select

from appserver.models import AuthEvent, RememberToken, UserSession
from appserver.security import personal_tokens
from appserver.security.sessions import SessionStore

from .support import confirm_websudo

ADMIN = "/admin/users"
LOGIN = "/rest/auth/1/session"
WEBSUDO = "/rest/auth/1/websudo"
TIMEOUT = 600  # the default


def html_login(testapp, username: str = "admin") -> webtest.TestApp:
    client = webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)
    form = client.get("/login").forms["login-form"]
    form["os_username"], form["os_password"] = username, f"{username}-password"
    form.submit(status=303)
    return client


def prompted(response, destination: str = ADMIN, resubmit: bool = False) -> None:
    """The answer is a redirect to the password prompt that returns to ``destination``."""
    assert response.status_int == 303, response.status
    location = urlsplit(response.location)
    assert location.path == "/websudo"
    query = parse_qs(location.query)
    assert query["os_destination"] == [destination]
    assert ("resubmit" in query) is resubmit


def events(dbsession, name: str) -> list[AuthEvent]:
    return list(dbsession.scalars(select(AuthEvent).where(AuthEvent.event == name).order_by(AuthEvent.id)))




def test_an_admin_page_asks_for_the_password_and_returns_to_the_page(testapp, users, dbsession):
    admin = html_login(testapp)
    prompted(admin.get(ADMIN + "?x=1"), ADMIN + "?x=1")
    prompt = admin.get("/websudo", params={"os_destination": ADMIN + "?x=1"})
    assert prompt.status_int == 200 and prompt.html.select_one("#websudo_username")["value"] == "admin"
    form = prompt.forms["websudo-form"]
    form["websudo_password"] = "admin-password"
    done = form.submit(status=303)
    assert done.location == "http://localhost/admin/users?x=1"
    assert done.headers["X-Atlassian-WebSudo"] == "Has-Authentication"
    page = admin.get(ADMIN + "?x=1", status=200)
    assert "another 10 minutes" in page.html.select_one("#websudo-status").text
    assert [e.user_id for e in events(dbsession, "websudo.granted")] == [users["admin"].id]


def test_a_wrong_password_counts_towards_the_lock_out(testapp, users, dbsession):
    admin = html_login(testapp)
    for attempt in range(3):
        form = admin.get("/websudo").forms["websudo-form"]
        form["websudo_password"] = f"wrong-{attempt}"
        page = form.submit(status=200)
        assert "not correct" in page.html.select_one("#websudo-error").text
        assert "X-Atlassian-WebSudo" not in page.headers
    dbsession.expire_all()
    assert users["admin"].current_failed_logins == 3 and users["admin"].locked_until is not None
    form = admin.get("/websudo").forms["websudo-form"]
    form["websudo_password"] = "admin-password"  # right, but during the cool-down
    denied = form.submit(status=403)
    assert int(denied.headers["Retry-After"]) > 0
    assert "Too many failed password attempts" in denied.html.select_one("#websudo-error").text
    prompted(admin.get(ADMIN))
    assert len(events(dbsession, "websudo.refused")) == 4
    assert len(events(dbsession, "login.failed")) == 3
    # The lock-out is the login's own: the form login is refused too.
    testapp.post_json(LOGIN, {"username": "admin", "password": "admin-password"}, status=403)


def session_of(client: webtest.TestApp) -> str:
    return client.cookies["appserver.session"]


def with_cookie(testapp, value: str) -> webtest.TestApp:
    """Another client holding a copy of a session cookie (a second tab's request in flight,
    or a thief's copy)."""
    copy = webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)
    copy.set_cookie("appserver.session", value)
    return copy


def test_the_confirmation_rotates_the_session(testapp, users, dbsession):
    """A change of privilege gets a new session id (OWASP): a copy of the cookie taken
    before the confirmation is refused from then on, rather than sharing the elevation."""
    admin = html_login(testapp)
    before = session_of(admin)
    copy = with_cookie(testapp, before)
    done = confirm_websudo(admin, "admin-password")
    assert "appserver.session=" in done.headers["Set-Cookie"]
    assert session_of(admin) != before
    admin.get(ADMIN, status=200)
    assert admin.get("/rest/api/2/myself").json["name"] == "admin"
    # The old cookie: rule 1 under /rest, the login page elsewhere, never the admin page.
    copy.get("/rest/api/2/myself", status=401)
    stale = with_cookie(testapp, before).get(ADMIN, status=303)
    assert urlsplit(stale.location).path == "/login"
    live = list(dbsession.scalars(select(UserSession).where(
        UserSession.user_id == users["admin"].id, UserSession.revoked_at.is_(None))))
    assert len(live) == 1 and live[0].websudo_at is not None
    assert len(events(dbsession, "websudo.granted")) == 1


def test_a_remembered_login_follows_the_rotated_session(testapp, users, dbsession):
    """The remember-me series names the session its login started, so that logging that
    browser out from another ends the series too. After the rotation it names the new one:
    logging the elevated session out from another browser still ends the remembered login."""
    admin = webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)
    form = admin.get("/login").forms["login-form"]
    form["os_username"], form["os_password"], form["os_cookie"] = "admin", "admin-password", True
    form.submit(status=303)
    confirm_websudo(admin, "admin-password")
    elevated = dbsession.scalars(select(UserSession).where(
        UserSession.user_id == users["admin"].id, UserSession.revoked_at.is_(None))).one()
    series = dbsession.scalars(select(RememberToken).where(RememberToken.user_id == users["admin"].id)).one()
    assert series.successor_session_id == elevated.id and series.revoked_at is None
    other = html_login(testapp)
    account = other.get("/account")
    [revoke] = [f for f in account.forms.values() if f.action.split("#")[0] == f"/account/sessions/{elevated.id}/revoke"]
    revoke.submit(status=303)
    remembered = with_cookie(testapp, "gone")
    remembered.set_cookie("appserver.remember", admin.cookies["appserver.remember"])
    assert remembered.get("/rest/api/2/myself", status=401).json["errorMessages"]


def test_a_session_ended_while_the_password_was_checked_is_not_elevated(testapp, users, dbsession, monkeypatch):
    """"Log out everywhere" (another browser, an administrator) commits while the password
    is being checked: the confirmation must not start a new session that outlives it. The
    person is sent to log in again, and told why."""
    from appserver.models.units import unit
    from appserver.security import websudo

    admin = html_login(testapp)
    form = admin.get("/websudo").forms["websudo-form"]
    real = websudo.check_user_password

    def revoked_meanwhile(request, user, password, *, channel):
        attempt = real(request, user, password, channel=channel)
        with unit(request, write=True) as db:
            SessionStore.of(request, db).revoke_user_sessions(user.id)
        return attempt

    monkeypatch.setattr(websudo, "check_user_password", revoked_meanwhile)
    form["websudo_password"] = "admin-password"
    answer = form.submit(status=303)
    location = urlsplit(answer.location)
    assert location.path == "/login" and parse_qs(location.query)["expired"] == ["1"]
    assert "X-Atlassian-WebSudo" not in answer.headers
    assert dbsession.scalars(select(UserSession).where(
        UserSession.user_id == users["admin"].id, UserSession.revoked_at.is_(None))).all() == []
    assert events(dbsession, "websudo.granted") == []


def test_the_window_rolls_with_each_admin_request(testapp, users, clock):
    admin = html_login(testapp)
    confirm_websudo(admin, "admin-password")
    for _ in range(3):  # 30 minutes of work, never 10 idle
        clock.advance(TIMEOUT - 1)
        admin.get(ADMIN, status=200)
    clock.advance(TIMEOUT)
    prompted(admin.get(ADMIN))
    admin.get("/account", status=200)  # still logged in: only the elevation ended


def test_an_admin_action_rolls_the_window_after_its_own_writes(testapp, users, clock, connection):
    """An action's transaction locks what it acts on (an account, its tokens, its sessions);
    the administrator's own session, extended inside it, was locked first, and two
    administrators acting on each other deadlocked. The window now rolls once the action
    committed, and still rolls."""
    from sqlalchemy import event

    from .test_admin import action_form

    admin = html_login(testapp)
    confirm_websudo(admin, "admin-password")
    clock.advance(TIMEOUT - 1)
    form = action_form(admin.get(ADMIN), users["alice"], "revoke-sessions")
    writes: list[str] = []

    def note(conn, cursor, statement, *args):
        words = statement.split()
        if words[0].upper() in ("UPDATE", "INSERT", "DELETE"):
            writes.append("window" if "websudo_at" in statement else " ".join(words[:3]).lower())

    event.listen(connection, "before_cursor_execute", note)
    try:
        form.submit(status=303)
    finally:
        event.remove(connection, "before_cursor_execute", note)
    assert "update sessions set" in writes, writes  # alice's sessions revoked
    assert writes[-1] == "window" and writes.count("window") == 1, writes  # then the window
    clock.advance(TIMEOUT - 1)  # rolled by the action: still elevated
    admin.get(ADMIN, status=200)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_drop_committed_while_an_admin_request_runs_is_not_undone(testapp, users, monkeypatch, method):
    """The person drops WebSudo (another tab, the REST resource) while an admin request that
    read the elevation is still running: that request's extension, written after the drop
    committed, brought the elevation back for a whole window (an outside review: 10 of 10,
    two processes). It extends only the elevation it read."""
    from appserver.models.units import writing
    from appserver.security import websudo

    from .test_admin import action_form

    admin = html_login(testapp)
    confirm_websudo(admin, "admin-password")
    page = admin.get(ADMIN)
    real = websudo.remaining

    def dropped_meanwhile(request):
        left = real(request)
        if left is not None:  # it read the elevation; now the drop commits
            with writing(request) as db:
                websudo._write(db, websudo._session(request), None)
        return left

    monkeypatch.setattr(websudo, "remaining", dropped_meanwhile)
    if method == "GET":
        admin.get(ADMIN, status=200)  # elevated when it began: served
    else:
        action_form(page, users["alice"], "revoke-sessions").submit(status=303)
    monkeypatch.undo()
    prompted(admin.get(ADMIN))


def test_ordinary_pages_do_not_extend_it(testapp, users, clock):
    admin = html_login(testapp)
    confirm_websudo(admin, "admin-password")
    clock.advance(TIMEOUT - 1)
    admin.get("/account", status=200)
    clock.advance(1)
    prompted(admin.get(ADMIN))


def test_a_post_that_needed_it_is_not_replayed(testapp, users, dbsession):
    admin = html_login(testapp)
    confirm_websudo(admin, "admin-password")
    confirmation = f"{ADMIN}/{users['fred'].id}/deactivate"  # deactivating asks first
    page = admin.get(confirmation)
    admin.delete(WEBSUDO, status=204)  # the elevation ends while the page is open
    response = page.forms["confirm-form"].submit(headers={"Referer": f"http://localhost{confirmation}"})
    prompted(response, confirmation, resubmit=True)
    prompt = response.follow()
    assert "not" in prompt.html.select_one("#websudo-resubmit").text
    form = prompt.forms["websudo-form"]
    form["websudo_password"] = "admin-password"
    back = form.submit(status=303)
    assert back.location == f"http://localhost{confirmation}"
    dbsession.expire_all()
    assert users["fred"].active  # nothing was done behind the administrator's back
    back.follow().forms["confirm-form"].submit(status=303)
    dbsession.expire_all()
    assert not users["fred"].active


def test_an_off_site_referer_or_destination_falls_back_to_the_admin_page(testapp, users):
    admin = html_login(testapp)
    page = admin.get("/websudo", params={"os_destination": "//evil.example/x"})
    assert page.forms["websudo-form"]["os_destination"].value == ADMIN
    response = admin.post(f"{ADMIN}/{users['fred'].id}/unlock",
                          {"csrf_token": page.forms["websudo-form"]["csrf_token"].value},
                          headers={"Referer": "http://evil.example/admin/users"})
    prompted(response, ADMIN, resubmit=True)


def test_rest_gets_jiras_401(testapp, users, app_request):
    raw = personal_tokens.create(app_request, users["fred"], "x", 5).raw
    path = f"/rest/pat/latest/tokens/{raw.split('_')[1]}"
    admin = webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)
    admin.post_json(LOGIN, {"username": "admin", "password": "admin-password"})
    response = admin.get(path, status=401)
    assert response.json == {"message": "This resource requires WebSudo.", "status-code": 401,
                             "errorMessages": ["This resource requires WebSudo."], "errors": {}}
    assert response.content_type == "application/json"
    assert response.headers["WWW-Authenticate"].startswith('Session realm="appserver"')
    assert response.headers["X-AUSERNAME"] == "admin"  # authenticated: only not elevated
    confirm_websudo(admin, "admin-password")
    admin.get(path, status=200)


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def test_basic_and_bearer_are_exempt(testapp, users, app_request):
    testapp.get(ADMIN, headers=basic("admin", "admin-password"), status=200)
    raw = personal_tokens.create(app_request, users["admin"], "admin script", 5).raw
    page = testapp.get(ADMIN, headers={"Authorization": f"Bearer {raw}"}, status=200)
    assert page.html.select_one("#websudo-status") is None  # nothing to show: no elevation
    assert "Set-Cookie" not in page.headers


def test_delete_rest_websudo_drops_it(testapp, users, dbsession):
    admin = html_login(testapp)
    confirm_websudo(admin, "admin-password")
    admin.get(ADMIN, status=200)
    for version in ("1", "latest"):
        assert admin.delete(f"/rest/auth/{version}/websudo", status=204).body == b""
    prompted(admin.get(ADMIN))
    assert len(events(dbsession, "websudo.dropped")) == 1  # the second had nothing to drop
    testapp.delete(WEBSUDO, status=401)  # anonymous
    for method in ("GET", "PUT"):  # DELETE is the only method, as in Jira
        assert admin.request(WEBSUDO, method=method, expect_errors=True).status_int == 405


def test_the_drop_button_on_the_admin_page(testapp, users):
    admin = html_login(testapp)
    confirm_websudo(admin, "admin-password")
    page = admin.get(ADMIN)
    home = [f for f in page.forms.values() if f.action == "/websudo/drop"][0].submit(status=303).follow()
    assert "Administrator access dropped" in home.text
    prompted(admin.get(ADMIN))


def test_logging_out_drops_it(testapp, users, dbsession):
    admin = html_login(testapp)
    confirm_websudo(admin, "admin-password")
    admin.get("/").forms[[f.action for f in admin.get("/").forms.values()].index("/logout")].submit(status=303)
    assert len(events(dbsession, "websudo.dropped")) == 1
    admin = html_login(testapp)
    prompted(admin.get(ADMIN))


def test_logging_out_locks_the_remember_me_tokens_before_the_session(testapp, users, connection):
    """The one lock order is account, remember-me tokens, sessions. Dropping the elevation
    wrote the session's row first, and "log out everywhere" for the same administrator,
    arriving then, deadlocked with the log-out on PostgreSQL. The log-out now writes the
    session only by revoking it, after the tokens."""
    from sqlalchemy import event

    admin = html_login(testapp)
    form = admin.get("/login").forms["login-form"]  # again, with remember-me
    form["os_username"], form["os_password"], form["os_cookie"] = "admin", "admin-password", True
    form.submit(status=303)
    confirm_websudo(admin, "admin-password")
    logout = admin.get("/").forms[[f.action for f in admin.get("/").forms.values()].index("/logout")]
    writes: list[str] = []

    def note(conn, cursor, statement, *args):
        words = statement.split()
        if words[0].upper() in ("UPDATE", "DELETE", "INSERT"):
            writes.append(" ".join(words[:3]).lower())

    event.listen(connection, "before_cursor_execute", note)
    try:
        logout.submit(status=303)
    finally:
        event.remove(connection, "before_cursor_execute", note)
    tables = [w.split()[1] if w.startswith("update") else w.split()[2] for w in writes]
    assert "remember_tokens" in tables and "sessions" in tables, writes
    assert tables.index("remember_tokens") < tables.index("sessions"), writes


def test_remember_me_brings_back_the_login_not_the_elevation(testapp, users, clock):
    admin = webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)
    form = admin.get("/login").forms["login-form"]
    form["os_username"], form["os_password"], form["os_cookie"] = "admin", "admin-password", True
    form.submit(status=303)
    confirm_websudo(admin, "admin-password")
    clock.advance(1801)  # the session idles out; remember-me starts a new one
    prompted(admin.get(ADMIN))
    assert admin.get("/account").headers["X-AUSERNAME"] == "admin"


def test_every_process_sees_the_elevation(make_app, testapp, users):
    """Two app instances (two processes behind a load balancer) share the database: an
    elevation granted by one is honoured, and dropped, by the other."""
    first, second = make_app(), make_app()
    login = first.post_json(LOGIN, {"username": "admin", "password": "admin-password"})
    cookie = {"Cookie": f"appserver.session={login.json['session']['value']}"}
    prompted(second.get(ADMIN, headers=cookie))
    first.set_cookie("appserver.session", login.json["session"]["value"])
    confirm_websudo(first, "admin-password")
    elevated = {"Cookie": f"appserver.session={first.cookies['appserver.session']}"}
    second.get(ADMIN, headers=elevated, status=200)
    second.delete(WEBSUDO, headers=elevated, status=204)
    prompted(first.get(ADMIN))


def test_switched_off_nobody_is_asked(make_app, users):
    testapp = make_app(**{"appserver.websudo.enabled": "false"})
    admin = html_login(testapp)
    page = admin.get(ADMIN, status=200)
    assert page.html.select_one("#websudo-status") is None
    assert admin.get("/websudo", status=303).location == "http://localhost/admin/users"


def test_the_timeout_is_a_setting(make_app, users, clock):
    testapp = make_app(**{"appserver.websudo.timeout": "60"})
    admin = html_login(testapp)
    confirm_websudo(admin, "admin-password")
    assert "another 1 minute," in admin.get(ADMIN).html.select_one("#websudo-status").text
    clock.advance(60)
    prompted(admin.get(ADMIN))


def test_the_prompt_asks_a_user_for_a_token_and_never_opens_admin_pages(testapp, users):
    """Anyone logged in may confirm the password (making a token asks for a recent one); an
    administrator's page still answers 403 to everyone else, prompt or not."""
    testapp.get("/websudo", status=303).location.startswith("http://localhost/login")
    fred = html_login(testapp, "fred")
    prompt = fred.get("/websudo", params={"os_destination": "/account"}, status=200)
    assert prompt.html.select_one("h1").text == "Confirm your password"
    assert "personal access token" in prompt.text
    fred.get(ADMIN, status=403)  # the permission is checked first: no prompt for non-admins
    form = fred.get("/websudo").forms["websudo-form"]  # no destination given
    form["websudo_password"] = "fred-password"
    assert form.submit(status=303).location.endswith("/account")  # not the users page: a 403
    fred.get(ADMIN, status=403)  # confirmed: still no administrator
    fred.delete(WEBSUDO, status=204)  # harmless: nothing to drop


@pytest.mark.parametrize(("seconds", "said"), [("600", "10 minutes"), ("60", "1 minute"), ("15", "15 seconds")])
def test_the_prompt_says_how_long_the_window_is(make_app, users, seconds, said):
    """In the words the REST message uses (a 15 s window read "1 minute")."""
    testapp = make_app(**{"appserver.websudo.timeout": seconds})
    prompt = html_login(testapp).get("/websudo")
    assert f"administrator mode for {said} after" in " ".join(prompt.html.select_one("main p").text.split())


def test_elevated_already_the_prompt_just_returns(testapp, users):
    admin = html_login(testapp)
    confirm_websudo(admin, "admin-password")
    assert admin.get("/websudo", params={"os_destination": "/admin/users?y=2"}, status=303).location.endswith("/admin/users?y=2")
    admin.get(ADMIN, status=200)


def test_the_prompt_refuses_a_forged_post(testapp, users, dbsession):
    """Login CSRF's cousin: a cross-site form must not elevate the administrator's session
    (nor count a wrong password against them)."""
    admin = html_login(testapp)
    for token in ({}, {"csrf_token": "forged"}):
        page = admin.post("/websudo", {"websudo_password": "admin-password", **token}, status=400)
        assert "expired or was sent from another site" in page.text
        assert "X-Atlassian-WebSudo" not in page.headers
    prompted(admin.get(ADMIN))
    assert events(dbsession, "websudo.granted") == []


def test_a_session_revoked_under_the_rotation_commits_nothing(testapp, users, dbsession, monkeypatch):
    """The last line: a revocation that got past the account's lock (one that did not take
    it) and revoked the session between the check and the rotation. The rotation finds it
    revoked: nothing of the request is committed (no new, elevated session outlives the log-
    out), and the person is sent to log in again (an outside review, on PostgreSQL)."""
    from sqlalchemy import update

    from appserver.security import websudo

    admin = html_login(testapp)
    form = admin.get("/websudo").forms["websudo-form"]

    def revoked_now(request):
        request.dbsession.execute(update(UserSession).where(
            UserSession.id == request.authentication.identity.session.id).values(revoked_at=request.now))
        return False  # as if checked a moment before

    monkeypatch.setattr(websudo, "acting_session_ended", revoked_now)
    form["websudo_password"] = "admin-password"
    answer = form.submit(status=303)
    location = urlsplit(answer.location)
    assert location.path == "/login" and parse_qs(location.query)["expired"] == ["1"]
    assert "appserver.session=;" in answer.headers["Set-Cookie"]
    dbsession.expire_all()
    live = dbsession.scalars(select(UserSession).where(
        UserSession.user_id == users["admin"].id, UserSession.revoked_at.is_(None))).all()
    assert len(live) == 1 and live[0].websudo_at is None  # rolled back: the old one, not elevated
    assert events(dbsession, "websudo.granted") == []


def test_logging_one_browser_out_locks_the_account_first(testapp, users, connection):
    """Every revocation takes the account's row first, so a rotation of that very session in
    flight (a WebSudo confirmation, a password change) either committed first or sees it
    revoked under its own lock."""
    from sqlalchemy import event

    other = html_login(testapp)
    admin = html_login(testapp)
    page = admin.get("/account")
    forms = {f.action: f for f in page.forms.values() if re.fullmatch(r"/account/sessions/\d+/revoke", f.action)}
    target = forms[min(forms, key=lambda action: int(action.split("/")[3]))]  # the other browser's, older
    statements: list[str] = []

    def note(conn, cursor, statement, *args):
        words = " ".join(statement.split()).lower()
        if words.startswith("select users.active") or words.startswith(("update remember_tokens", "update sessions")):
            statements.append(words.split(" set ")[0].split(" from ")[0])

    event.listen(connection, "before_cursor_execute", note)
    try:
        target.submit(status=303)
    finally:
        event.remove(connection, "before_cursor_execute", note)
    assert statements[:3] == ["select users.active", "update remember_tokens", "update sessions"], statements
    del other
