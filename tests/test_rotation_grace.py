"""Two tabs of one browser when one of them rotates the session (a WebSudo confirmation, a
password change, "log out other sessions"): the other tab's request, sent with the old
cookies before the rotating answer arrived, is answered after the rotation committed.

An outside review found that answer undid the rotation: it deleted the new cookies (the
browser logged out right after "you stay logged in"), or started yet another session from
the remember-me cookie (the WebSudo confirmation lost), and the rotated session was left live
with no cookie for a log-out to end, elevated after WebSudo. Each test replays that order
deterministically: tab A's answer first, then tab B's request with the cookies from before.
"""
from __future__ import annotations

from urllib.parse import urlencode

import pytest
import webtest
from sqlalchemy import select

from appserver.models import UserSession

from .support import confirm_websudo

SESSION, REMEMBER = "appserver.session", "appserver.remember"


def log_in(testapp, username: str, remember: bool = True) -> webtest.TestApp:
    browser = webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)
    form = browser.get("/login").forms["login-form"]
    form["os_username"], form["os_password"], form["os_cookie"] = username, f"{username}-password", remember
    form.submit(status=303)
    return browser


def log_out(browser: webtest.TestApp) -> None:
    [form for form in browser.get("/").forms.values() if form.action == "/logout"][0].submit(status=303)


def cookies(browser: webtest.TestApp) -> str:
    """The Cookie header the browser sends now: what another tab's request carries."""
    return "; ".join(f"{c.name}={c.value}" for c in browser.cookiejar)


def other_tab(testapp, method: str, path: str, cookie_header: str, **kw):
    """A request sent with the cookies of before (no cookie jar of its own)."""
    return webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ).request(
        path, method=method, headers={"Cookie": cookie_header}, expect_errors=True, **kw)


def live_sessions(dbsession, user) -> list[UserSession]:
    dbsession.expire_all()
    return list(dbsession.scalars(select(UserSession).where(
        UserSession.user_id == user.id, UserSession.revoked_at.is_(None))))


def rotate(browser, how: str):
    if how == "websudo":
        confirm_websudo(browser, "admin-password")
    elif how == "password change":
        form = browser.get("/account").forms["password-form"]
        form["current_password"], form["new_password"], form["confirm_password"] = (
            "admin-password", "admin-new-password", "admin-new-password")
        form.submit(status=303)
    else:
        browser.get("/account").forms["revoke-others-form"].submit(status=303)


@pytest.mark.parametrize("remember", [True, False], ids=["remember-me", "no remember-me"])
@pytest.mark.parametrize("how", ["websudo", "password change", "log out other sessions"])
def test_an_answer_to_the_old_cookies_changes_no_cookie_and_the_log_out_ends_everything(
        testapp, users, dbsession, how, remember):
    admin = log_in(testapp, "admin", remember)
    before = cookies(admin)
    rotate(admin, how)  # tab A: its answer set the new cookies
    for method, path, refused in (("GET", "/issues", 200), ("GET", "/admin/users", 303),
                                  ("GET", "/rest/api/2/myself", 401), ("POST", "/rest/api/2/search", 401)):
        tab_b = other_tab(testapp, method, path, before)  # sent before A's answer arrived
        # A stale cookie's answer (a copy of the old cookie is worth nothing), which
        # changes no cookie: the new ones stand, and no other session is started.
        assert (tab_b.status_int, tab_b.headers["X-AUSERNAME"]) == (refused, "anonymous"), path
        assert "Set-Cookie" not in tab_b.headers, path
    assert len(live_sessions(dbsession, users["admin"])) == 1
    # The browser holds A's cookies: still logged in, and its log-out ends every session.
    assert admin.get("/rest/api/2/myself").json["name"] == "admin"
    if how == "websudo":
        admin.get("/admin/users", status=200)  # the confirmation was not lost
    log_out(admin)
    assert live_sessions(dbsession, users["admin"]) == []


def test_after_the_grace_the_old_cookie_is_deleted_as_any_stale_one(testapp, users, clock):
    fred = log_in(testapp, "fred")
    before = cookies(fred)
    fred.get("/account").forms["revoke-others-form"].submit(status=303)
    clock.advance(31)
    page = other_tab(testapp, "GET", "/issues", before)
    assert page.headers["X-AUSERNAME"] == "anonymous"
    assert {value.split("=")[0] for value in page.headers.getall("Set-Cookie")} == {SESSION, REMEMBER}
    assert fred.get("/rest/api/2/myself").json["name"] == "fred"


def test_a_log_out_is_no_rotation(testapp, users):
    """Only a rotation has a successor: a logged-out cookie is deleted at once."""
    fred = log_in(testapp, "fred", remember=False)
    before = cookies(fred)
    log_out(fred)
    page = other_tab(testapp, "GET", "/issues", before)
    assert page.headers["X-AUSERNAME"] == "anonymous" and "Set-Cookie" in page.headers


@pytest.mark.parametrize("remember", [True, False], ids=["remember-me", "no remember-me"])
@pytest.mark.parametrize("how", ["websudo", "password change", "log out other sessions"])
def test_a_log_out_with_the_old_cookies_ends_the_browsers_login(testapp, users, dbsession, how, remember):
    """Tab B's Log out, from a page shown before tab A's rotation, said "You have logged
    out" and left the browser logged in, elevated after WebSudo (an outside review of the
    grace). It ends the session the rotation started, and the remembered login with it."""
    admin = log_in(testapp, "admin", remember)
    before = cookies(admin)
    token = admin.get("/").html.select_one("form[action='/logout'] input[name=csrf_token]")["value"]
    rotate(admin, how)
    out = other_tab(testapp, "POST", "/logout", before, body=urlencode({"csrf_token": token}).encode(),
                    content_type="application/x-www-form-urlencoded")
    assert out.status_int == 303 and out.location.endswith("/?notice=logged-out")
    deleted = {value.split("=")[0] for value in out.headers.getall("Set-Cookie")}
    assert deleted == {SESSION, REMEMBER}
    assert live_sessions(dbsession, users["admin"]) == []
    # If A's answer came last, the browser holds its cookies: they log no one in.
    assert admin.get("/rest/api/2/myself", status=401)
    assert admin.get("/issues").headers["X-AUSERNAME"] == "anonymous"


def test_the_old_cookie_in_the_grace_is_audited_as_any_stale_one(testapp, users, dbsession):
    """A copy used right after a password change is the moment a thief notices: it is in the
    audit trail, as after the grace."""
    from appserver.models import AuthEvent

    fred = log_in(testapp, "fred")
    before = cookies(fred)
    rotate_password = fred.get("/account").forms["password-form"]
    rotate_password["current_password"] = "fred-password"
    rotate_password["new_password"] = rotate_password["confirm_password"] = "fred-new-password"
    rotate_password.submit(status=303)
    other_tab(testapp, "GET", "/rest/api/2/myself", before)
    assert dbsession.scalars(select(AuthEvent.detail).where(AuthEvent.event == "session.expired")).all() == ["revoked"]


def test_a_rotation_between_the_lookup_and_the_touch(testapp, users, dbsession, clock, monkeypatch):
    """The rotation commits after tab B's request read its session and before it touched
    it: the touch finds the session revoked, and the row the lookup read knew of no
    successor. The row is read again: still the grace's answer, no cookie changed."""
    from appserver.security.sessions import SessionStore

    fred = log_in(testapp, "fred")
    before = cookies(fred)
    clock.advance(61)  # a touch is due
    touch = SessionStore.touch

    def rotated_first(store, session):
        issued = store.issue(session.user, user_agent="tab A", remote_addr="127.0.0.1")
        store.revoke(session, replaced_by=issued.session)
        return touch(store, session)

    monkeypatch.setattr(SessionStore, "touch", rotated_first)
    page = other_tab(testapp, "GET", "/issues", before)
    assert page.headers["X-AUSERNAME"] == "anonymous" and "Set-Cookie" not in page.headers
    assert len(live_sessions(dbsession, users["fred"])) == 1  # no session from remember-me
