"""Every stage of the lifecycle leaves an audit event; no secret is ever stored in it."""
from __future__ import annotations

import base64
import logging

import webtest
from sqlalchemy import select

from appserver.models import AuthEvent


def events(dbsession):
    return [(e.event, e.user_id) for e in dbsession.scalars(select(AuthEvent).order_by(AuthEvent.id))]


def test_the_lifecycle_leaves_the_right_events(testapp, users, clock, dbsession, app_request):
    fred = users["fred"].id
    browser = webtest.TestApp(testapp.app, extra_environ={**testapp.extra_environ, "HTTP_USER_AGENT": "Tester"})
    for password in ("wrong-1", "wrong-2", "wrong-3"):
        browser.post_json("/rest/auth/1/session", {"username": "fred", "password": password}, status=401)
    browser.post_json("/rest/auth/1/session", {"username": "fred", "password": "fred-password"}, status=403)
    clock.advance(60)
    browser.post_json("/rest/auth/1/session?os_cookie=true", {"username": "fred", "password": "fred-password"})
    clock.advance(1800)
    browser.get("/rest/api/2/myself")  # remember-me brings the login back
    page = browser.get("/account")
    form = page.forms["password-form"]
    form["current_password"], form["new_password"], form["confirm_password"] = (
        "fred-password", "fred-password-2", "fred-password-2")
    form.submit(status=303)
    browser.get("/account").forms["revoke-others-form"].submit(status=303)
    browser.delete("/rest/auth/1/session", status=204)
    browser.post_json("/rest/auth/1/session", {"username": "ghost", "password": "boo"}, status=401)

    recorded = events(dbsession)
    assert recorded == [
        ("login.failed", fred), ("login.failed", fred), ("login.failed", fred),
        ("account.locked", fred),
        ("login.denied", fred),
        ("login.succeeded", fred),
        ("session.expired", fred),
        ("remember.used", fred),
        ("password.changed", fred),
        ("session.revoked", fred),
        ("logout", fred),
        ("login.failed", None),
    ]
    rows = list(dbsession.scalars(select(AuthEvent)))
    assert all(row.remote_addr == "127.0.0.1" for row in rows)
    assert rows[0].user_agent == "Tester"
    assert rows[0].detail == "rest: wrong password"


def test_no_secret_is_stored_in_the_audit_table(testapp, users, dbsession):
    secrets = ["fred-password", "wrong-password-xyz", "ghost-pass"]
    testapp.post_json("/rest/auth/1/session", {"username": "fred", "password": secrets[1]}, status=401)
    testapp.post_json("/rest/auth/1/session", {"username": "ghost", "password": secrets[2]}, status=401)
    login = testapp.post_json("/rest/auth/1/session?os_cookie=true", {"username": "fred", "password": secrets[0]})
    secrets += [login.json["session"]["value"], testapp.cookies["appserver.remember"]]
    secrets += testapp.cookies["appserver.remember"].split(".")
    auth = base64.b64encode(b"fred:fred-password").decode()
    testapp.get("/rest/api/2/myself", headers={"Authorization": "Basic " + auth})
    dump = " ".join(
        " ".join(str(value) for value in (e.event, e.detail, e.user_agent, e.remote_addr))
        for e in dbsession.scalars(select(AuthEvent))
    )
    for secret in secrets:
        assert secret not in dump
    assert "ghost" not in dump  # unknown names are not recorded (they may be passwords)


def test_account_page_shows_recent_activity(testapp, users):
    testapp.post_json("/rest/auth/1/session", {"username": "fred", "password": "nope"}, status=401)
    testapp.post_json("/rest/auth/1/session", {"username": "fred", "password": "fred-password"})
    activity = testapp.get("/account").html.select_one("#activity").text
    assert "Failed login" in activity and "Logged in" in activity


def test_each_event_is_a_line_of_the_process_log_once_committed(testapp, users, caplog):
    """An operator reading journald sees failed logins, lock-outs and password changes as
    they happen (they were in the database only: an outside review). No secret, and no
    name typed for an account that does not exist (people type passwords there)."""
    caplog.set_level(logging.INFO, logger="appserver.audit")
    for password in ("wrong-1", "wrong-2", "wrong-3"):
        testapp.post_json("/rest/auth/1/session", {"username": "fred", "password": password}, status=401)
    testapp.post_json("/rest/auth/1/session", {"username": "ghost-secret-typed-here", "password": "boo"}, status=401)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "appserver.audit"]
    failed = ("INFO", "login.failed user=fred address=127.0.0.1 detail='rest: wrong password'")
    assert lines[:3] == [failed] * 3
    assert lines[3][0] == "WARNING" and lines[3][1].startswith("account.locked user=fred address=127.0.0.1")
    assert lines[4] == ("INFO", "login.failed user=- address=127.0.0.1 detail='rest: unknown user'")
    assert "wrong-" not in caplog.text and "ghost-secret" not in caplog.text and "boo" not in caplog.text
    # An event of the request's own transaction (pyramid_tm's commit), not of a unit:
    admin = {"Authorization": "Basic " + base64.b64encode(b"admin:admin-password").decode()}
    testapp.put_json("/rest/api/2/user/password?username=alice", {"password": "a-much-better-one"}, headers=admin,
                     status=204)
    assert [r.getMessage() for r in caplog.records if "password.changed" in r.getMessage()] == [
        "password.changed user=alice address=127.0.0.1 detail='0 session(s) revoked by admin'"]


def test_an_event_whose_transaction_rolled_back_is_not_logged(app_request, users, caplog):
    from appserver.security import audit

    caplog.set_level(logging.INFO, logger="appserver.audit")
    session = app_request.dbsession
    audit.record(app_request, audit.Event.USER_CREATED, users["fred"], "outside the savepoint")
    savepoint = session.begin_nested()
    audit.record(app_request, audit.Event.PASSWORD_CHANGED, users["fred"], "never happened")
    session.flush()
    savepoint.rollback()
    lines = [line for _, line in session.info["appserver.audit_lines"]]
    assert [detail for *_, detail in lines] == ["outside the savepoint"]  # logged at the commit
