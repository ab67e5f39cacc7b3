"""Remember me (Seraph's os_cookie): a new session after expiry, rotated tokens, theft."""
from __future__ import annotations

from sqlalchemy import func, select

from appserver.models import AuthEvent, RememberToken, UserSession

REMEMBER = "appserver.remember"
SESSION = "appserver.session"


def login(testapp, remember: bool):
    form = testapp.get("/login").forms["login-form"]
    form["os_username"] = "fred"
    form["os_password"] = "fred-password"
    form["os_cookie"] = remember
    return form.submit(status=303)


def cookie(testapp, name):
    return testapp.cookies.get(name)


def test_remember_me_brings_the_login_back_after_the_session_expired(testapp, users, clock):
    login(testapp, remember=True)
    first_session, first_remember = cookie(testapp, SESSION), cookie(testapp, REMEMBER)
    assert first_remember
    clock.advance(1800)  # idle timeout: the session is dead
    page = testapp.get("/account")
    assert page.html.select_one("#account-username").text == "fred"
    assert page.html.select_one("#session-expired") is None
    assert cookie(testapp, SESSION) not in (None, first_session)
    assert cookie(testapp, REMEMBER) != first_remember  # rotated on use


def test_rest_calls_are_brought_back_too_rule_1_does_not_fire(testapp, users, clock):
    response = testapp.post_json(
        "/rest/auth/1/session?os_cookie=true", {"username": "fred", "password": "fred-password"}
    )
    assert cookie(testapp, REMEMBER)
    clock.advance(43200)  # absolute lifetime
    me = testapp.get("/rest/api/2/myself")
    assert me.json["name"] == "fred"
    assert cookie(testapp, SESSION) != response.json["session"]["value"]


def test_os_authtype_basic_refuses_but_keeps_the_rotated_remember_me_cookie(testapp, users, clock):
    """os_authType=basic refuses the remembered login (a 401, anonymous), but the token was
    already rotated on the server: the new one must reach the browser, or its next request
    would replay the old token and look like theft."""
    login(testapp, remember=True)
    first_remember = cookie(testapp, REMEMBER)
    clock.advance(1800)
    refused = testapp.get("/rest/api/2/myself?os_authType=basic", status=401)
    assert refused.headers["X-AUSERNAME"] == "anonymous"
    assert "X-Seraph-LoginReason" not in refused.headers
    assert refused.headers["WWW-Authenticate"].startswith("Basic ")
    assert cookie(testapp, REMEMBER) not in (None, first_remember)
    assert testapp.get("/rest/api/2/myself").json["name"] == "fred"  # no theft alarm, still fred


def test_without_remember_me_an_expired_session_is_gone(testapp, users, clock):
    login(testapp, remember=False)
    assert cookie(testapp, REMEMBER) is None
    clock.advance(1800)
    assert testapp.get("/").html.select_one("#session-expired") is not None
    assert cookie(testapp, SESSION) is None  # the stale cookie was deleted
    testapp.get("/rest/api/2/myself", status=401)


def test_a_rotated_token_cannot_be_replayed_and_replay_revokes_the_series(
    testapp, users, clock, dbsession
):
    login(testapp, remember=True)
    stolen = cookie(testapp, REMEMBER)
    clock.advance(1800)
    testapp.get("/account")  # the owner's browser uses (and rotates) the token
    clock.advance(60)  # past the grace period for parallel requests, and a touch interval
    testapp.get("/account")  # the owner goes on with the session the rotation started

    thief = testapp.__class__(testapp.app, extra_environ=testapp.extra_environ)
    thief.set_cookie(REMEMBER, stolen)
    refused = thief.get("/rest/api/2/myself", status=401)  # theft detected, nobody logged in
    assert not refused.headers.getall("Set-Cookie")  # rule 1: kept, the next request is a 401 too
    thief.get("/issues")  # a page: the dead cookie means anonymous there, and is deleted
    assert thief.cookies.get(REMEMBER) is None

    live = dbsession.scalar(
        select(func.count()).select_from(RememberToken).where(RememberToken.revoked_at.is_(None))
    )
    assert live == 0, "every remember-me token of the user is revoked"
    sessions = dbsession.scalar(
        select(func.count()).select_from(UserSession).where(UserSession.revoked_at.is_(None))
    )
    assert sessions == 0, "sessions made from the stolen cookie are revoked too"
    assert dbsession.scalar(select(AuthEvent).where(AuthEvent.event == "remember.theft"))
    # the owner must log in again
    clock.advance(1800)
    testapp.get("/rest/api/2/myself", status=401)


def test_a_rotation_whose_answer_was_lost_ends_that_login_alone(testapp, users, clock, dbsession):
    """The rotation committed but its answer never arrived (the client gave up, a process
    died after the commit): the browser still holds the replaced token, and after the grace
    it looks like a replay. The session the rotation started never came back, so it is
    most likely that: this remembered login ends (whoever holds its successor loses it too),
    but the user's other sessions and remembered logins stay (an outside review: they were
    all revoked, the user logged out everywhere by a network error)."""
    elsewhere = testapp.__class__(testapp.app, extra_environ=testapp.extra_environ)
    elsewhere.post_json("/rest/auth/1/session", {"username": "fred", "password": "fred-password"})
    login(testapp, remember=True)
    before = dict(testapp.cookies)
    clock.advance(1000)
    elsewhere.get("/rest/api/2/myself")  # the other client stays active meanwhile
    clock.advance(800)  # this browser's session has expired
    testapp.get("/account")  # rotates; pretend its answer was lost:
    testapp.cookies.clear()
    for name, value in before.items():
        testapp.set_cookie(name, value)
    clock.advance(31)  # past the grace
    refused = testapp.get("/rest/api/2/myself", status=401)  # a stale login cookie: rule 1
    assert not refused.headers.getall("Set-Cookie")  # kept: the next request is a 401 too
    assert "no longer valid" in refused.json["errorMessages"][0]
    assert elsewhere.get("/rest/api/2/myself").json["name"] == "fred"  # untouched
    events = [e.event for e in dbsession.scalars(select(AuthEvent).order_by(AuthEvent.id))]
    assert "remember.reused" in events and "remember.theft" not in events
    series = dbsession.scalars(select(RememberToken)).all()
    assert [t.revoked_at is not None for t in series] == [True]
    live = dbsession.scalar(select(func.count()).select_from(UserSession).where(UserSession.revoked_at.is_(None)))
    assert live == 1  # the other client's; the rotation's own session ended with its series


def test_parallel_requests_with_the_same_token_are_not_theft(testapp, users, clock):
    login(testapp, remember=True)
    token = cookie(testapp, REMEMBER)
    clock.advance(1800)
    other_tab = testapp.__class__(testapp.app, extra_environ=testapp.extra_environ)
    other_tab.set_cookie(REMEMBER, token)
    testapp.get("/account")  # rotates
    clock.advance(5)
    assert other_tab.get("/rest/api/2/myself").json["name"] == "fred"  # within the grace


def test_logout_clears_remember_me(testapp, users, clock):
    login(testapp, remember=True)
    token = cookie(testapp, REMEMBER)
    page = testapp.get("/account")
    page.forms[0].submit(status=303)  # the header's log-out form
    assert cookie(testapp, REMEMBER) is None
    clock.advance(1800)
    replay = testapp.__class__(testapp.app, extra_environ=testapp.extra_environ)
    replay.set_cookie(REMEMBER, token)
    replay.get("/rest/api/2/myself", status=401)


def test_remember_me_expires(testapp, users, clock):
    login(testapp, remember=True)
    clock.advance(14 * 24 * 3600)
    testapp.get("/rest/api/2/myself", status=401)
    assert cookie(testapp, REMEMBER) is not None  # rule 1: kept, the next request is a 401 too
    testapp.get("/issues")  # a page deletes it
    assert cookie(testapp, REMEMBER) is None


def test_garbage_remember_cookie_is_dropped(testapp, users):
    testapp.set_cookie(REMEMBER, "not-a-token")
    response = testapp.get("/")
    assert "appserver.remember=;" in " ".join(response.headers.getall("Set-Cookie"))


def test_a_dead_remember_me_cookie_alone_is_a_401_under_rest_and_a_notice_elsewhere(testapp, users, clock):
    """A client whose only login cookie is a remember-me token that can no longer log in
    (here: its series ended by a log-out) believes it is logged in, as with a stale session cookie:
    rule 1 applies, never the 5 public issues in silence."""
    login(testapp, remember=True)
    token = cookie(testapp, REMEMBER)
    testapp.get("/account").forms[0].submit(status=303)  # the header's log-out form
    for stale in (token, "not-a-token"):
        client = testapp.__class__(testapp.app, extra_environ=testapp.extra_environ)
        client.set_cookie(REMEMBER, stale)
        search = client.get("/rest/api/2/search?maxResults=0", status=401)
        assert "Your session has expired" in search.json["errorMessages"][0]
        assert not search.headers.getall("Set-Cookie")  # kept: the next request is a 401 too
        client.set_cookie(REMEMBER, stale)
        page = client.get("/issues")
        assert page.html.select_one("#session-expired") is not None


def test_a_page_left_open_past_the_idle_timeout_still_logs_out(testapp, users, clock, dbsession):
    """Its forms carry the CSRF token of the session that idled out; the remember-me cookie
    logs the browser in again on the very POST. The Log out button answered "this form has
    expired" and the browser stayed logged in (an outside review): a form of the session the
    remember-me login replaced is the same browser's, and is accepted."""
    login(testapp, remember=True)
    page = testapp.get("/issues")  # the header's Log out form, left open
    clock.advance(1800)  # idle: the session is dead, the remembered login is not
    [logout] = [form for form in page.forms.values() if form.action == "/logout"]
    logout.submit(status=303)
    testapp.get("/rest/api/2/myself", status=401)
    assert cookie(testapp, REMEMBER) is None
    live = dbsession.scalar(select(func.count()).select_from(UserSession).where(
        UserSession.user_id == users["fred"].id, UserSession.revoked_at.is_(None)))
    assert live == 0


def test_a_form_of_another_expired_session_is_still_refused(testapp, users, clock):
    """Only the session the cookie named counts: a token made for any other session (another
    browser's, an attacker's own) is refused as before."""
    other = testapp.__class__(testapp.app, extra_environ=testapp.extra_environ)
    login(other, remember=False)
    foreign = [f for f in other.get("/issues").forms.values() if f.action == "/logout"][0]["csrf_token"].value
    login(testapp, remember=True)
    clock.advance(1800)
    testapp.post("/logout", {"csrf_token": foreign}, status=400)
    assert testapp.get("/rest/api/2/myself").json["name"] == "fred"


def test_a_failing_page_still_delivers_the_rotated_remember_me_cookie(testapp, users, clock, monkeypatch):
    """The rotation committed in its own unit before the view failed: a 503 that drops its
    cookies leaves the browser with the replaced token, whose next use after the grace
    reads as a replay and ends the remembered login (an outside review)."""
    from sqlalchemy import exc

    from appserver.views import account

    login(testapp, remember=True)
    replaced = cookie(testapp, REMEMBER)
    clock.advance(1800)

    def broken(request, **extra):
        raise exc.OperationalError("SELECT 1", {}, Exception("disk I/O error"))

    monkeypatch.setattr(account, "account_page", broken)
    failed = testapp.get("/account", status=503)
    assert failed.headers["X-AUSERNAME"] == "anonymous"
    assert cookie(testapp, REMEMBER) != replaced
    monkeypatch.undo()
    clock.advance(60)  # past the rotation's grace
    assert testapp.get("/account").html.select_one("#account-username").text == "fred"


def test_a_password_change_keeps_this_browsers_remembered_login_only(testapp, users, clock, dbsession):
    """"Your other sessions and remembered logins have been logged out": this browser's
    remembered login stays with it (it ended too, and the browser was logged out at the next
    idle timeout), another browser's ends."""
    other = testapp.__class__(testapp.app, extra_environ=testapp.extra_environ)
    login(other, remember=True)
    login(testapp, remember=True)
    form = testapp.get("/account").forms["password-form"]
    form["current_password"] = "fred-password"
    form["new_password"] = form["confirm_password"] = "fred-password-2"
    done = form.submit(status=303).follow()
    assert "other sessions and remembered logins" in done.html.select_one("#notice").text
    assert cookie(testapp, REMEMBER)
    clock.advance(1800)  # both sessions idle out
    assert testapp.get("/rest/api/2/myself").json["name"] == "fred"  # remembered
    other.get("/rest/api/2/myself", status=401)  # its series was revoked
    series = dbsession.scalars(select(RememberToken).where(
        RememberToken.user_id == users["fred"].id, RememberToken.revoked_at.is_(None))).all()
    assert len(series) == 1


def test_a_log_out_served_by_the_session_a_parallel_tab_started_ends_it(testapp, users, clock, dbsession):
    """The session expired; one tab's request rotates the remember-me token and starts a new
    session; another tab, still holding the old cookies, logs out within the grace. It is
    served by the new session, so the log-out must revoke that one, not only the dead one
    it presented."""
    login(testapp, remember=True)
    old_session, old_remember = cookie(testapp, SESSION), cookie(testapp, REMEMBER)
    clock.advance(1800)  # idle: the session is dead
    assert testapp.get("/rest/api/2/myself").json["name"] == "fred"  # rotates: a new session
    new_session = cookie(testapp, SESSION)
    assert new_session != old_session
    other_tab = testapp.__class__(testapp.app, extra_environ=testapp.extra_environ)
    other_tab.set_cookie(SESSION, old_session)
    other_tab.set_cookie(REMEMBER, old_remember)
    other_tab.delete("/rest/auth/1/session", status=204)
    fresh = testapp.__class__(testapp.app, extra_environ=testapp.extra_environ)
    fresh.set_cookie(SESSION, new_session)
    fresh.get("/rest/api/2/myself", status=401)
    live = dbsession.scalar(
        select(func.count()).select_from(UserSession)
        .where(UserSession.user_id == users["fred"].id, UserSession.revoked_at.is_(None))
    )
    assert live == 0


def test_a_login_from_the_tab_served_by_a_parallel_rotation_ends_that_session_too(testapp, users, clock, dbsession):
    """As a log-out does: a new login revokes the session the request presented and the one
    it was served by (no session of the browser's left behind, live and unused)."""
    login(testapp, remember=True)
    old_session, old_remember = cookie(testapp, SESSION), cookie(testapp, REMEMBER)
    clock.advance(1800)
    testapp.get("/rest/api/2/myself")  # rotates: a new session
    other_tab = testapp.__class__(testapp.app, extra_environ=testapp.extra_environ)
    other_tab.set_cookie(SESSION, old_session)
    other_tab.set_cookie(REMEMBER, old_remember)
    fresh = other_tab.post_json("/rest/auth/1/session", {"username": "alice", "password": "alice-password"})
    live = dbsession.scalars(
        select(UserSession.user_id).where(UserSession.revoked_at.is_(None))
    ).all()
    assert live == [users["alice"].id], live
    assert fresh.json["session"]["value"]


def _change_password(client, new="fred-password-2"):
    form = client.get("/account").forms["password-form"]
    form["current_password"] = "fred-password"
    form["new_password"] = form["confirm_password"] = new
    return form.submit(status=303)


def _log_out_others(client):
    page = client.get("/account")
    forms = {id(f): f for f in page.forms.values() if f.action.split("#")[0] == "/account/sessions/revoke-others"}
    (form,) = forms.values()  # WebTest lists a form under its index and its id
    return form.submit(status=303)


def test_a_copy_of_the_cookies_is_worth_nothing_after_a_password_change(testapp, users, clock):
    """The usual answer to "my credentials were stolen" is a password change: this browser
    keeps its login, under new cookies; a copy of its session or remember-me cookie taken
    before, used or not, is refused (an outside review: the copy kept working, since the
    browser's series was kept by its id alone and never renewed)."""
    login(testapp, remember=True)
    unused = testapp.__class__(testapp.app, extra_environ=testapp.extra_environ)
    unused.set_cookie(REMEMBER, cookie(testapp, REMEMBER))
    session_copy = testapp.__class__(testapp.app, extra_environ=testapp.extra_environ)
    session_copy.set_cookie(SESSION, cookie(testapp, SESSION))
    _change_password(testapp)
    unused.get("/rest/api/2/myself", status=401)
    session_copy.get("/rest/api/2/myself", status=401)
    clock.advance(1800)  # this browser: its session idles out, its remembered login is new
    assert testapp.get("/rest/api/2/myself").json["name"] == "fred"


def test_a_copy_that_was_used_first_is_worth_nothing_either(testapp, users, clock):
    """The thief used the copy first (it holds the current token, the browser a replaced
    one): the browser's series is not kept at all, and the thief's session is revoked."""
    login(testapp, remember=True)
    thief = testapp.__class__(testapp.app, extra_environ=testapp.extra_environ)
    thief.set_cookie(REMEMBER, cookie(testapp, REMEMBER))
    assert thief.get("/rest/api/2/myself").json["name"] == "fred"  # rotates the series
    clock.advance(60)
    _change_password(testapp)
    assert cookie(testapp, REMEMBER) is None  # nothing of it was the browser's any more
    clock.advance(60)
    thief.get("/rest/api/2/myself", status=401)


def test_log_out_other_sessions_leaves_a_copy_nothing_too(testapp, users, clock):
    login(testapp, remember=True)
    remember_copy = testapp.__class__(testapp.app, extra_environ=testapp.extra_environ)
    remember_copy.set_cookie(REMEMBER, cookie(testapp, REMEMBER))
    session_copy = testapp.__class__(testapp.app, extra_environ=testapp.extra_environ)
    session_copy.set_cookie(SESSION, cookie(testapp, SESSION))
    done = _log_out_others(testapp).follow()
    assert "other sessions have been logged out" in done.html.select_one("#notice").text
    remember_copy.get("/rest/api/2/myself", status=401)
    session_copy.get("/rest/api/2/myself", status=401)
    assert testapp.get("/rest/api/2/myself").json["name"] == "fred"
    clock.advance(1800)
    assert testapp.get("/rest/api/2/myself").json["name"] == "fred"  # remembered, under the new series


def test_a_log_out_ends_the_session_a_copy_of_its_remembered_login_started(testapp, users, clock):
    """A thief used a copy of the remember-me cookie while the browser's session was live
    (no request of the browser replays a replaced token, so no theft is seen). The browser
    logs out: its remembered login ends, and so does the session the thief's rotation
    started (an outside review: the series was revoked, the thief's session stayed live)."""
    login(testapp, remember=True)
    thief = testapp.__class__(testapp.app, extra_environ=testapp.extra_environ)
    thief.set_cookie(REMEMBER, cookie(testapp, REMEMBER))
    assert thief.get("/rest/api/2/myself").json["name"] == "fred"  # rotates the series
    page = testapp.get("/account")
    page.forms[0].submit(status=303)  # the header's log-out form
    thief.get("/rest/api/2/myself", status=401)


def test_a_new_login_ends_the_session_a_copy_of_the_old_remembered_login_started(testapp, users, clock):
    """The sibling: logging in again on this browser ends the series its cookie named, and
    the session that series last started elsewhere."""
    login(testapp, remember=True)
    thief = testapp.__class__(testapp.app, extra_environ=testapp.extra_environ)
    thief.set_cookie(REMEMBER, cookie(testapp, REMEMBER))
    assert thief.get("/rest/api/2/myself").json["name"] == "fred"
    login(testapp, remember=False)
    thief.get("/rest/api/2/myself", status=401)
    assert testapp.get("/rest/api/2/myself").json["name"] == "fred"
