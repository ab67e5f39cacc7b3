"""The database goes away in the middle of a request.

In a view, after authentication succeeded (found by the load suite: PostgreSQL restarted
during POST /logout): the answer is the 503 page with Retry-After, for nobody -- not a 500
from the page layout reading the user's row again through a session whose flush just failed.

While the request's COMMIT waits for its answer: the writes may be in the database, or not.
Such a request is never run again (pyramid_retry would, for any other transient error)."""
from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from .conftest import DATABASES
from .support import LiveServer, create_user, postgresql_live_server

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def test_the_database_lost_during_an_html_view_is_a_503_not_a_500(testapp, users, dbengine):
    login = testapp.get("/login")
    testapp.post("/login", {"os_username": "fred", "os_password": "fred-password",
                            "csrf_token": CSRF.search(login.text).group(1)}, status=303)
    home = testapp.get("/")
    assert home.headers["X-AUSERNAME"] == "fred"

    def connection_lost(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO AUTH_EVENTS"):  # logout's audit row
            raise OperationalError(statement, {}, Exception("terminating connection due to administrator command"))

    event.listen(dbengine, "before_cursor_execute", connection_lost)
    try:
        response = testapp.post("/logout", {"csrf_token": CSRF.search(home.text).group(1)}, expect_errors=True)
    finally:
        event.remove(dbengine, "before_cursor_execute", connection_lost)
    assert response.status_int == 503, response.text[:500]
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["X-AUSERNAME"] == "anonymous"
    assert "Try again" in response.text and "Not logged in" in response.text
    # Nothing was written: the session still works.
    assert testapp.get("/").headers["X-AUSERNAME"] == "fred"


@pytest.fixture(scope="module")
def server(live_server_factory):
    return live_server_factory(threads=2)


@pytest.fixture(scope="module")
def postgresql_server() -> Iterator[LiveServer]:
    """Only a database across a network leaves a COMMIT's outcome unknown (SQLite's library
    reports it, whatever happens)."""
    with postgresql_live_server("doubt") as server:
        yield server


def connection_lost() -> Exception:
    import psycopg

    return psycopg.errors.ConnectionFailure("server closed the connection unexpectedly")


@pytest.mark.skipif("postgresql" not in DATABASES, reason="needs TEST_DATABASE_URL (PostgreSQL)")
def test_a_commit_that_got_no_answer_is_not_run_again(postgresql_server, monkeypatch):
    """The database committed a password change, and the connection broke before the answer
    came back. Run again, the request would find its own session revoked and answer 401 to
    a change that was made. It is not run again: a 503 says the change may have been saved."""
    from appserver.security import accounts

    server = postgresql_server

    with server.request() as request:
        create_user(request, "doubting", "old-password-1")
    client = requests.Session()
    client.post(server.url + "/rest/auth/1/session",
                json={"username": "doubting", "password": "old-password-1"}, timeout=30).raise_for_status()
    real_change, real_commit = accounts.change_own_password, server.engine.dialect.do_commit
    changes, armed = [], []

    def change(*args, **kwargs):
        changes.append(True)
        revoked = real_change(*args, **kwargs)
        armed.append(threading.get_ident())  # the next commit of this thread is the request's
        return revoked

    def commit_then_lose_the_answer(dbapi_connection):
        real_commit(dbapi_connection)
        if threading.get_ident() in armed:
            armed.clear()
            raise connection_lost()

    monkeypatch.setattr(accounts, "change_own_password", change)
    monkeypatch.setattr(server.engine.dialect, "do_commit", commit_then_lose_the_answer)
    response = client.put(server.url + "/rest/api/2/myself/password", timeout=30,
                          json={"currentPassword": "old-password-1", "password": "new-password-2"})
    assert response.status_code == 503, response.text
    assert "may or may not have been saved" in response.json()["errorMessages"][0]
    assert int(response.headers["Retry-After"]) > 0
    assert changes == [True], "run once, not again"
    # It was saved, as the answer allowed.
    myself = server.url + "/rest/api/2/myself"
    assert requests.get(myself, auth=("doubting", "new-password-2"), timeout=30).status_code == 200
    assert requests.get(myself, auth=("doubting", "old-password-1"), timeout=30).status_code == 401


def test_a_statement_that_failed_before_the_commit_is_still_run_again(server, monkeypatch):
    """Nothing was sent for COMMIT, so nothing can be in doubt: the request runs again."""
    from appserver.security import accounts

    with server.request() as request:
        create_user(request, "retried", "old-password-1")
    client = requests.Session()
    client.post(server.url + "/rest/auth/1/session",
                json={"username": "retried", "password": "old-password-1"}, timeout=30).raise_for_status()
    real_change, changes = accounts.change_own_password, []

    def change_then_lose_the_connection(request, *args, **kwargs):
        changes.append(True)
        revoked = real_change(request, *args, **kwargs)
        if len(changes) == 1:
            raise OperationalError("UPDATE users", {}, connection_lost(), connection_invalidated=True)
        return revoked

    monkeypatch.setattr(accounts, "change_own_password", change_then_lose_the_connection)
    response = client.put(server.url + "/rest/api/2/myself/password", timeout=30,
                          json={"currentPassword": "old-password-1", "password": "new-password-2"})
    assert response.status_code == 204, response.text
    assert changes == [True, True]
