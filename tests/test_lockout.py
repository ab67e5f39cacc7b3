"""Elevated security after failed logins (Seraph's rule), shared by form, REST and Basic."""
from __future__ import annotations

import base64

import pytest
import requests

from appserver.models import AuthEvent, User
from sqlalchemy import select

from .support import confirm_websudo


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def rest_login(testapp, username, password, status):
    return testapp.post_json(
        "/rest/auth/1/session", {"username": username, "password": password}, status=status
    )


def form_login(testapp, username, password, status=None):
    form = testapp.get("/login").forms["login-form"]
    form["os_username"] = username
    form["os_password"] = password
    return form.submit(status=status)


def test_three_failures_then_denied_without_checking_the_password(testapp, users, app):
    for _ in range(3):
        rest_login(testapp, "fred", "wrong", 401)
    hashes = app.registry.passwords.hash_count
    denied = rest_login(testapp, "fred", "fred-password", 403)
    assert app.registry.passwords.hash_count == hashes, "a locked account's password was checked"
    assert denied.json == {
        "errorMessages": [
            "Login denied: too many failed login attempts for this account. Try again in 60 seconds."
        ],
        "errors": {},
    }
    assert denied.headers["X-Seraph-LoginReason"] == "AUTHENTICATION_DENIED"
    assert denied.headers["X-Authentication-Denied-Reason"] == (
        "TOO_MANY_FAILED_LOGINS; login-url=http://localhost/login"
    )
    assert denied.headers["Retry-After"] == "60"


def test_cool_down_ends_and_success_resets_the_current_count(testapp, users, clock, dbsession):
    for _ in range(3):
        rest_login(testapp, "fred", "wrong", 401)
    clock.advance(59)
    assert rest_login(testapp, "fred", "fred-password", 403).headers["Retry-After"] == "1"
    clock.advance(1)
    ok = rest_login(testapp, "fred", "fred-password", 200)
    assert ok.json["loginInfo"]["failedLoginCount"] == 3  # the total is kept
    fred = dbsession.scalar(select(User).where(User.username == "fred"))
    dbsession.refresh(fred)
    assert (fred.current_failed_logins, fred.total_failed_logins, fred.locked_until) == (0, 3, None)


def test_cool_down_doubles_with_each_further_failure_up_to_the_cap(make_app, users, clock):
    testapp = make_app(**{"appserver.login.max_lockout_seconds": "200"})
    for _ in range(3):
        rest_login(testapp, "fred", "wrong", 401)
    waits = []
    for _ in range(4):
        waits.append(int(rest_login(testapp, "fred", "wrong", 403).headers["Retry-After"]))
        clock.advance(waits[-1])
        rest_login(testapp, "fred", "wrong", 401)  # one more failure after each cool-down
    assert waits == [60, 120, 200, 200]


def test_form_rest_and_basic_share_one_count(testapp, users):
    failed = form_login(testapp, "fred", "wrong", status=200)
    assert "username and password are incorrect" in failed.text
    assert failed.headers["X-Seraph-LoginReason"] == "AUTHENTICATED_FAILED"
    rest_login(testapp, "fred", "wrong", 401)
    testapp.get("/rest/api/2/myself", headers=basic("fred", "wrong"), status=401)
    # the fourth attempt, whatever the channel, is denied
    denied = testapp.get("/rest/api/2/myself", headers=basic("fred", "fred-password"), status=403)
    assert denied.headers["X-Seraph-LoginReason"] == "AUTHENTICATION_DENIED"
    page = form_login(testapp, "fred", "fred-password", status=403)
    assert "Too many failed login attempts" in page.text
    assert "Wait 60 seconds" in page.html.select_one("#login-error").text


def test_another_account_is_unaffected(testapp, users):
    for _ in range(4):
        rest_login(testapp, "fred", "wrong", "*")
    rest_login(testapp, "alice", "alice-password", 200)


def test_admin_unlock_works_at_once(testapp, users, dbsession):
    for _ in range(3):
        rest_login(testapp, "fred", "wrong", 401)
    rest_login(testapp, "fred", "fred-password", 403)
    admin = testapp.__class__(testapp.app, extra_environ=testapp.extra_environ)
    rest_login(admin, "admin", "admin-password", 200)
    confirm_websudo(admin, "admin-password")
    page = admin.get("/admin/users")
    assert "Locked for 60 s" in page.html.select_one('tr[data-username="fred"]').text
    page.forms[[f.action for f in page.forms.values()].index(
        f"/admin/users/{users['fred'].id}/unlock")].submit().follow()
    rest_login(testapp, "fred", "fred-password", 200)
    events = [e.event for e in dbsession.scalars(
        select(AuthEvent).where(AuthEvent.user_id == users["fred"].id).order_by(AuthEvent.id))]
    assert events.count("login.failed") == 3
    assert "account.locked" in events and "account.unlocked" in events
    assert events[-1] == "login.succeeded"


def test_guesses_between_the_owners_polls_are_capped_per_hour(make_app, users, clock):
    """The owner's Basic client polls; a guesser slips two wrong passwords between its
    requests, each right password starting the consecutive count again: never locked out
    (an outside review, 20 guesses of 20 checked). The hour's count stops it at
    max_failures_per_hour, the owner's right password included, until the hour is over."""
    testapp = make_app(**{"appserver.login.max_failures_per_hour": "10"})
    owner, guess = basic("fred", "fred-password"), basic("fred", "guess")
    checked = 0
    for _ in range(8):
        for _ in range(2):
            clock.advance(10)
            if testapp.get("/rest/api/2/myself", headers=guess, expect_errors=True).status_int == 401:
                checked += 1
        clock.advance(10)
        if testapp.get("/rest/api/2/myself", headers=owner, expect_errors=True).status_int != 200:
            break
    assert checked == 10  # the tenth failure of the hour locked the account
    denied = testapp.get("/rest/api/2/myself", headers=owner, status=403)
    # Now is 150 s in; the hour began with the first guess, 10 s in.
    assert denied.headers["Retry-After"] == str(3600 - (150 - 10))
    clock.advance(3600)
    assert testapp.get("/rest/api/2/myself", headers=owner).json["name"] == "fred"


def test_a_password_set_by_an_administrator_starts_the_hour_again(make_app, users):
    """The reset kept the hour's failures: the owner's new password then locked her after two
    typos, for most of an hour (an adversarial review)."""
    testapp = make_app(**{"appserver.login.max_failures_per_hour": "6"})
    for password in ("wrong", "wrong", "alice-password", "wrong", "wrong", "alice-password"):
        testapp.get("/rest/api/2/myself", headers=basic("alice", password), expect_errors=True)
    testapp.put_json("/rest/api/2/user/password?username=alice", {"password": "a-new-password-1"},
                     headers=basic("admin", "admin-password"), status=204)
    for _ in range(2):
        testapp.get("/rest/api/2/myself", headers=basic("alice", "typo"), status=401)
    assert testapp.get("/rest/api/2/myself", headers=basic("alice", "a-new-password-1")).json["name"] == "alice"


def test_unknown_usernames_behave_like_known_ones(testapp, users):
    def answers(username):
        seen = []
        for _ in range(4):
            response = rest_login(testapp, username, "wrong", "*")
            seen.append(
                (
                    response.status_int,
                    response.json,
                    response.headers.get("X-Seraph-LoginReason"),
                    response.headers.get("Retry-After"),
                    response.headers.get("WWW-Authenticate"),
                )
            )
        return seen

    assert answers("fred") == answers("nobody-like-this")


def test_the_failure_that_locks_the_account_says_so_on_the_page(testapp, users):
    """Not "incorrect" once more and the lock-out only on the next try: the page that
    answers the third wrong password says how long to wait, for an unknown name alike."""
    for username in ("fred", "nobody-like-this"):
        texts = [form_login(testapp, username, "wrong", 200).html.select_one("#login-error").text.strip()
                 for _ in range(3)]
        assert texts[:2] == ["Sorry, your username and password are incorrect. Please try again."] * 2
        assert texts[2] == (
            "Sorry, your username and password are incorrect. That was too many failed login "
            "attempts for this account: wait 60 seconds, then try again."
        )
        assert "Wait 60 seconds" in form_login(testapp, username, username + "-password", 403).text


def test_inactive_account_fails_like_a_wrong_password(testapp, users, dbsession):
    users["alice"].active = False
    dbsession.flush()
    inactive = rest_login(testapp, "alice", "alice-password", 401)
    wrong = rest_login(testapp, "fred", "wrong", 401)
    assert inactive.json == wrong.json
    assert inactive.headers["X-Seraph-LoginReason"] == wrong.headers["X-Seraph-LoginReason"]


def test_an_inactive_accounts_right_password_counts_as_a_failure(testapp, users, dbsession):
    """On a deactivated account the right password is one more failure: the lock-out comes
    at the same attempt whichever passwords were tried, so it confirms no guess."""
    users["alice"].active = False
    users["fred"].active = False
    dbsession.flush()
    for name, guesses in (("alice", ["a", "alice-password", "b", "alice-password"]), ("fred", ["a", "b", "c", "d"])):
        statuses = [rest_login(testapp, name, guess, "*").status_int for guess in guesses]
        assert statuses == [401, 401, 401, 403], (name, statuses)
    dbsession.refresh(users["alice"])
    assert users["alice"].current_failed_logins == 3 and users["alice"].locked_until is not None


def test_two_servers_with_their_own_engines_share_the_count(live_server_factory):
    """Two app instances with their own engines and pools on one database (PostgreSQL in
    CI): failures through either count towards one lock-out, and the cool-down ends for
    both. (tests/test_cli.py does the same with two ``pserve`` OS processes.)"""
    first, second = live_server_factory(), live_server_factory()
    url = "/rest/auth/1/session"
    credentials = {"username": "alice", "password": "wrong"}
    assert requests.post(first.url + url, json=credentials).status_code == 401
    assert requests.post(second.url + url, json=credentials).status_code == 401
    assert requests.get(first.url + "/rest/api/2/myself", auth=("alice", "wrong")).status_code == 401
    denied = requests.post(second.url + url, json={"username": "alice", "password": "alice-password"})
    assert denied.status_code == 403
    assert denied.headers["X-Seraph-LoginReason"] == "AUTHENTICATION_DENIED"
    for server in (first, second):
        server.clock.advance(60)
    assert requests.post(first.url + url, json={"username": "alice", "password": "alice-password"}).ok


@pytest.mark.parametrize("failures", [1, 2])
def test_below_the_limit_the_right_password_works(testapp, users, failures):
    for _ in range(failures):
        rest_login(testapp, "fred", "wrong", 401)
    rest_login(testapp, "fred", "fred-password", 200)


def test_a_successful_basic_request_resets_the_failure_count(testapp, users):
    """Two wrong, one right, one wrong, one right: 200. Were the count not reset by the
    successful Basic request, the wrong one after it would be the third failure: a lock-out."""
    for password, status in [("wrong", 401), ("wrong", 401), ("fred-password", 200), ("wrong", 401),
                             ("fred-password", 200)]:
        testapp.get("/rest/api/2/myself", headers=basic("fred", password), status=status)


@pytest.mark.parametrize("locked", [False, True])
def test_unknown_names_cost_the_statements_of_real_accounts(testapp, users, count_statements, locked):
    """Equal work, so timing does not tell a (locked) real account from an unknown name:
    the same statements, in the same order of kinds, on both paths."""
    names = ("fred", "ghost")
    if locked:
        for name in names:
            for _ in range(3):
                rest_login(testapp, name, "wrong", 401)
    kinds = {}
    for name in names:
        count_statements.reset()
        rest_login(testapp, name, "still-wrong", 403 if locked else 401)
        kinds[name] = [s.lstrip().split(None, 1)[0].upper() for s in count_statements.statements]
    assert len(kinds["fred"]) == len(kinds["ghost"]), kinds
