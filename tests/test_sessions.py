"""Server-side sessions (issue 2, acceptance 4 and 6; session-security items 1-7): tokens,
hashes, strict mode, rotation at login, revocation at logout, expiry by the injected clock,
no revival of a revoked session, purging.
"""
from __future__ import annotations

import base64
import hashlib
from datetime import timedelta

import pytest
import webtest
from sqlalchemy import func, inspect, select, text, update

from appserver.models import UserSession
from appserver.security import tokens
from appserver.security.sessions import CookieState, SessionStore
from appserver.security.tokens import hash_token, new_token

from .test_lifecycle_html import submit_login


def rest_login(client, username="fred"):
    return client.post_json(
        "/rest/auth/1/session", {"username": username, "password": f"{username}-password"}
    ).json["session"]["value"]


def with_cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"appserver.session={token}"}


def session_row(dbsession, token: str) -> UserSession | None:
    dbsession.expire_all()
    return dbsession.scalar(select(UserSession).where(UserSession.token_hash == hash_token(token)))


def count_sessions(dbsession) -> int:
    return dbsession.scalar(select(func.count()).select_from(UserSession))


def store_at(request, when) -> SessionStore:
    settings = request.appserver_settings
    return SessionStore(
        request.dbsession, when, idle_timeout=settings.idle_timeout, max_age=settings.max_age,
        touch_interval=settings.touch_interval,
    )


# --- Tokens ----------------------------------------------------------------------------------


def test_tokens_come_from_secrets_with_at_least_128_bits(testapp, users, monkeypatch):
    asked: list[int] = []
    real = tokens.secrets.token_urlsafe

    def spy(nbytes: int) -> str:
        asked.append(nbytes)
        return real(nbytes)

    monkeypatch.setattr(tokens.secrets, "token_urlsafe", spy)
    token = rest_login(testapp)
    assert asked and all(n >= 16 for n in asked)
    assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) * 8 >= 128
    assert len({new_token() for _ in range(1000)}) == 1000


def test_only_the_sha256_of_the_token_is_stored_nowhere_the_token(testapp, users, dbsession):
    token = rest_login(testapp)
    row = session_row(dbsession, token)
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    # Search every column of every table for the raw token.
    connection = dbsession.connection()
    for table in inspect(connection).get_table_names():
        for values in connection.execute(text(f'SELECT * FROM "{table}"')):
            assert not any(token in str(value) for value in values), f"raw token in {table}"


# --- Strict mode -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/rest/api/2/serverInfo", "/", "/login", "/account"])
def test_an_unknown_token_never_creates_a_row(testapp, users, dbsession, path):
    before = count_sessions(dbsession)
    unknown = new_token()
    testapp.get(path, headers=with_cookie(unknown), expect_errors=True)
    testapp.get(path, headers=with_cookie("' OR '1'='1"), expect_errors=True)
    assert count_sessions(dbsession) == before
    assert session_row(dbsession, unknown) is None


def test_a_planted_token_is_never_adopted_by_logging_in(testapp, users, dbsession):
    planted = new_token()  # an attacker sets this cookie in the victim's browser
    testapp.set_cookie("appserver.session", planted)
    submit_login(testapp, status=303)
    assert testapp.cookies["appserver.session"] != planted
    assert session_row(dbsession, planted) is None
    testapp.get("/rest/api/2/myself", headers=with_cookie(planted), status=401)


# --- Rotation at login (fixation) ------------------------------------------------------------


def test_login_on_top_of_another_users_session_keeps_nothing_of_it(testapp, users, dbsession):
    """Log in as alice in a browser that holds fred's session: fred's token is dead, and the
    browser has nothing of fred's (session, CSRF token, identity)."""
    submit_login(testapp, "fred", status=303)
    fred_token = testapp.cookies["appserver.session"]
    fred_csrf = testapp.get("/account").forms["password-form"]["csrf_token"].value

    submit_login(testapp, "alice", status=303)
    alice_token = testapp.cookies["appserver.session"]
    assert alice_token != fred_token
    assert session_row(dbsession, fred_token).revoked_at is not None
    assert session_row(dbsession, alice_token).user_id == users["alice"].id

    account = testapp.get("/account")
    assert account.html.select_one("#account-username").text == "alice"
    assert account.forms["password-form"]["csrf_token"].value != fred_csrf
    assert len(account.html.select("#sessions tbody tr")) == 1  # alice's own session only
    assert testapp.get("/rest/api/2/myself").json["name"] == "alice"
    # fred's old cookie, replayed: a dead session.
    testapp.get("/rest/api/2/myself", headers=with_cookie(fred_token), status=401)
    # fred's CSRF token does not work for alice.
    testapp.post("/logout", {"csrf_token": fred_csrf}, status=400)


def test_rest_login_rotates_the_token_and_the_pre_login_token_is_refused(testapp, users, dbsession):
    first = rest_login(testapp)
    second = rest_login(testapp)  # the client still sends its first cookie
    assert second != first
    assert session_row(dbsession, first).revoked_at is not None
    testapp.reset()
    replay = testapp.get("/rest/api/2/myself", headers=with_cookie(first), status=401)
    assert "expired" in replay.json["errorMessages"][0]
    assert testapp.get("/rest/api/2/myself", headers=with_cookie(second)).json["name"] == "fred"


def test_the_post_logout_token_is_refused(testapp, users):
    token = rest_login(testapp)
    testapp.delete("/rest/auth/1/session", status=204)
    testapp.reset()
    testapp.get("/rest/api/2/myself", headers=with_cookie(token), status=401)
    # Outside /rest it is anonymous, never fred.
    assert testapp.get("/", headers=with_cookie(token)).headers["X-AUSERNAME"] == "anonymous"
    # And logging out again with it does not revive or reach anything.
    testapp.delete("/rest/auth/1/session", headers=with_cookie(token), status=401)


def test_other_sessions_of_the_user_survive_a_logout(testapp, users):
    laptop, phone = rest_login(testapp), rest_login(webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ))
    testapp.delete("/rest/auth/1/session", headers=with_cookie(laptop), status=204)
    testapp.reset()
    assert testapp.get("/rest/api/2/myself", headers=with_cookie(phone)).json["name"] == "fred"


# --- Expiry, with the injected clock ---------------------------------------------------------


def test_idle_timeout(testapp, users, clock):
    token = rest_login(testapp)
    testapp.reset()
    clock.advance(1799)
    assert testapp.get("/rest/api/2/myself", headers=with_cookie(token)).json["name"] == "fred"
    clock.advance(1799)  # idle again for less than 30 minutes: the last request counted
    assert testapp.get("/rest/api/2/myself", headers=with_cookie(token)).json["name"] == "fred"
    clock.advance(1800)
    testapp.get("/rest/api/2/myself", headers=with_cookie(token), status=401)


def test_the_idle_clock_only_moves_on_touches(testapp, users, clock):
    """Activity inside the touch interval is not written: the idle timeout counts from the
    last write, so at most one interval of activity is forgotten, never more."""
    token = rest_login(testapp)
    testapp.reset()
    clock.advance(30)  # < touch interval (60 s): no write
    testapp.get("/rest/api/2/myself", headers=with_cookie(token))
    clock.advance(1770)  # 1800 s after the login, 1770 s after the last request
    testapp.get("/rest/api/2/myself", headers=with_cookie(token), status=401)


def test_basic_beside_the_cookie_does_not_keep_the_session_alive(testapp, users, clock, dbsession):
    """Basic wins over the cookie, so the cookie's session serves nothing: a client that sends
    both for hours (right, wrong or another user's password) must not keep it from idling out
    (an outside review)."""
    token = rest_login(testapp)
    testapp.reset()
    basic = "Basic " + base64.b64encode(b"fred:fred-password").decode()
    wrong = "Basic " + base64.b64encode(b"fred:not-the-password").decode()
    alice = "Basic " + base64.b64encode(b"alice:alice-password").decode()
    for authorization in (basic, alice, basic, wrong):
        clock.advance(600)
        headers = {**with_cookie(token), "Authorization": authorization}
        testapp.get("/rest/api/2/myself", headers=headers, expect_errors=True)
        testapp.reset()
    assert session_row(dbsession, token).last_seen_at == clock.now() - timedelta(seconds=2400)
    testapp.get("/rest/api/2/myself", headers=with_cookie(token), status=401)


def test_absolute_lifetime_ends_even_an_active_session(testapp, users, clock):
    token = rest_login(testapp)
    testapp.reset()
    for _ in range(43200 // 1200 - 1):
        clock.advance(1200)
        testapp.get("/rest/api/2/myself", headers=with_cookie(token), status=200)
    clock.advance(1199)
    testapp.get("/rest/api/2/myself", headers=with_cookie(token), status=200)
    clock.advance(1)  # 12 hours after the login
    response = testapp.get("/rest/api/2/myself", headers=with_cookie(token), status=401)
    assert "expired" in response.json["errorMessages"][0]


def test_shorter_configured_timeouts_apply(make_app, users, clock):
    testapp = make_app(**{
        "appserver.session.idle_timeout": "120",
        "appserver.session.max_age": "300",
        "appserver.session.touch_interval": "10",
    })
    login = testapp.post_json("/rest/auth/1/session", {"username": "fred", "password": "fred-password"})
    assert "Max-Age=300;" in login.headers["Set-Cookie"]
    token = login.json["session"]["value"]
    testapp.reset()
    clock.advance(119)
    testapp.get("/rest/api/2/myself", headers=with_cookie(token), status=200)
    clock.advance(120)
    testapp.get("/rest/api/2/myself", headers=with_cookie(token), status=401)


@pytest.mark.parametrize(
    ("age", "idle", "state"),
    [
        (0, 0, CookieState.LIVE),
        (1799, 1799, CookieState.LIVE),
        (1800, 1800, CookieState.EXPIRED),  # idle timeout
        (43199, 100, CookieState.LIVE),
        (43200, 0, CookieState.EXPIRED),  # absolute lifetime
    ],
)
def test_lookup_states(app_request, users, age, idle, state):
    now = app_request.now
    issued = store_at(app_request, now - timedelta(seconds=age)).issue(users["fred"])
    issued.session.last_seen_at = now - timedelta(seconds=idle)
    app_request.dbsession.flush()
    assert store_at(app_request, now).lookup(issued.token).state is state


def test_malformed_tokens_never_reach_the_database(app_request, count_statements):
    store = store_at(app_request, app_request.now)
    count_statements.reset()
    for garbage in ["", "x", "A" * 42, "A" * 44, "A" * 10_000, "' OR '1'='1' --", "é" * 43, "A" * 42 + "\x00"]:
        assert store.lookup(garbage).state is CookieState.MALFORMED
    assert len(count_statements) == 0


# --- A revoked session cannot be revived by a request in flight ------------------------------


def test_a_touch_in_flight_cannot_revive_a_revoked_session(testapp, users, dbsession, clock, monkeypatch):
    """The request read the session as live; before it writes last_seen_at, a logout
    elsewhere revokes the row. Its UPDATE ... WHERE revoked_at IS NULL then changes nothing,
    and the request is answered as for a revoked session."""
    token = rest_login(testapp)
    testapp.reset()
    clock.advance(120)  # past the touch interval: the next request writes last_seen_at
    row_id = session_row(dbsession, token).id
    original_touch = SessionStore.touch
    revoked_at = clock.now() - timedelta(seconds=1)

    def logout_elsewhere_then_touch(store, session):
        store.db.execute(
            update(UserSession).where(UserSession.id == row_id).values(revoked_at=revoked_at)
        )
        return original_touch(store, session)

    monkeypatch.setattr(SessionStore, "touch", logout_elsewhere_then_touch)
    response = testapp.get("/rest/api/2/myself", headers=with_cookie(token), status=401)
    assert "expired" in response.json["errorMessages"][0]
    row = session_row(dbsession, token)
    assert row.revoked_at == revoked_at
    assert row.last_seen_at == clock.now() - timedelta(seconds=120)  # not touched


def test_touch_and_revoke_only_write_live_rows(app_request, users):
    store = store_at(app_request, app_request.now)
    issued = store.issue(users["fred"])
    store.revoke(issued.session)
    first_revocation = issued.session.revoked_at
    later = store_at(app_request, app_request.now + timedelta(seconds=600))
    assert later.touch(issued.session) is False
    later.revoke(issued.session)  # a second logout does not move the revocation time
    app_request.dbsession.expire_all()
    row = app_request.dbsession.get(UserSession, issued.session.id)
    assert row.revoked_at == first_revocation
    assert row.last_seen_at == app_request.now


# --- Purging ---------------------------------------------------------------------------------


def test_purge_deletes_dead_rows_in_bounded_batches_and_keeps_live_ones(app_request, users):
    db = app_request.dbsession
    now = app_request.now
    fred = users["fred"]
    live = [store_at(app_request, now - timedelta(seconds=s)).issue(fred).session for s in (0, 600, 1700)]
    dead = []
    for _ in range(4):
        issued = store_at(app_request, now).issue(fred)
        store_at(app_request, now).revoke(issued.session)
        dead.append(issued.session)
    dead += [store_at(app_request, now - timedelta(seconds=1800 + s)).issue(fred).session for s in (0, 5)]
    dead += [store_at(app_request, now - timedelta(seconds=43200)).issue(fred).session]
    for session in dead[-1:]:
        session.last_seen_at = now  # active, but past the absolute lifetime
    db.flush()
    live_ids = {s.id for s in live}
    dead_ids = {s.id for s in dead}
    assert len(dead_ids) == 7

    store = store_at(app_request, now)
    batches, after = [], 0
    while True:
        deleted, after = store.purge_batch(3, after=after)
        if not deleted:
            break
        batches.append(deleted)
    assert batches == [3, 3, 1]
    remaining = set(db.scalars(select(UserSession.id)))
    assert live_ids <= remaining
    assert not (dead_ids & remaining)


def test_purge_frees_the_remember_me_tokens_before_it_deletes_their_sessions(app_request, users, connection):
    """Tokens before sessions, the one lock order: the foreign key's ON DELETE SET NULL
    locked a token naming a purged session after the session, against a remember-me login
    that holds its token, then revokes its old session (a deadlock on PostgreSQL)."""
    from sqlalchemy import event

    from appserver.models import RememberToken

    db, now, fred = app_request.dbsession, app_request.now, users["fred"]
    rotated = store_at(app_request, now).issue(fred).session
    store_at(app_request, now).revoke(rotated)
    app_request.remember_store.issue(fred)
    db.flush()
    db.execute(update(RememberToken).values(successor_session_id=rotated.id))
    writes: list[str] = []

    def note(conn, cursor, statement, *args):
        if statement.split()[0].upper() in ("UPDATE", "DELETE"):
            writes.append(" ".join(statement.split()[:3]).lower())

    event.listen(connection, "before_cursor_execute", note)
    try:
        assert store_at(app_request, now).purge_batch(10)[0] == 1
    finally:
        event.remove(connection, "before_cursor_execute", note)
    assert writes == ["update remember_tokens set", "delete from sessions"]
    assert db.scalar(select(RememberToken.successor_session_id)) is None


def test_times_come_back_aware_utc_on_every_database(app_request, users):
    """Stored from any time zone, read back as the same instant in UTC (SQLite has no time
    zones; PostgreSQL's timestamptz has them): never naive, identical on both."""
    from datetime import datetime, timezone

    berlin = timezone(timedelta(hours=2))
    when = datetime(2026, 6, 1, 14, 30, 15, 123000, tzinfo=berlin)
    issued = store_at(app_request, when).issue(users["fred"])
    app_request.dbsession.expire_all()
    row = app_request.dbsession.get(UserSession, issued.session.id)
    assert row.created_at == when
    assert row.created_at.tzinfo == timezone.utc
    assert row.created_at.isoformat() == "2026-06-01T12:30:15.123000+00:00"


@pytest.mark.parametrize("path, status", [("/rest/api/2/myself", 401), ("/account", 303)])
def test_a_live_session_ends_once_its_user_is_inactive_however_the_flag_was_set(
    testapp, users, dbsession, path, status
):
    """Not only the admin action (which also revokes the sessions): the flag alone, set here
    with straight SQL and the session row left as it was, ends the session at once."""
    from appserver.models import User

    token = rest_login(testapp)
    testapp.get(path, status=200)
    dbsession.execute(update(User).where(User.id == users["fred"].id).values(active=False))
    testapp.get(path, status=status)
    assert session_row(dbsession, token).revoked_at is None
    testapp.get("/rest/api/2/myself", headers=with_cookie(token), status=401)
