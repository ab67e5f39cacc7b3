"""Safe requests (GET, HEAD, OPTIONS) are served without a pyramid_tm transaction (issue 11):
their ``request.dbsession`` reads and refuses writes, is closed when the request ends, and
their few writes are units of work. Unsafe requests keep the transaction of issue 9."""
from __future__ import annotations

import logging

import pytest
import transaction
from pyramid.scripting import prepare
from sqlalchemy import select, update

from appserver.models import READ_ONLY, ReadOnlySessionError, User, UserSession
from appserver.models.units import UnitOrderError, attach, unit, writing
from appserver.security.sessions import SessionStore
from appserver.security.tokens import hash_token

LOGIN = "/rest/auth/1/session"
MYSELF = "/rest/api/2/myself"


@pytest.fixture
def begun(monkeypatch) -> list[object]:
    """Every transaction pyramid_tm's (explicit) managers begin."""
    managers: list[object] = []
    real = transaction.TransactionManager.begin

    def begin(self):
        managers.append(self)
        return real(self)

    monkeypatch.setattr(transaction.TransactionManager, "begin", begin)
    return managers


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_a_safe_request_begins_no_transaction(testapp, fred_cookie, begun, method):
    testapp.request(MYSELF, method=method, headers=fred_cookie, expect_errors=True)
    testapp.get("/rest/api/2/serverInfo")
    testapp.get("/admin/users", headers=fred_cookie, status=403)
    assert begun == []


def test_an_unsafe_request_still_has_its_transaction(testapp, users, begun):
    testapp.post_json(LOGIN, {"username": "fred", "password": "fred-password"})
    assert len(begun) == 1


def write_in_view(monkeypatch, write) -> None:
    """Make GET /rest/api/2/myself run ``write(request)`` before answering."""
    from appserver.views.rest import api

    real = api.user_json

    def writing_view(request, user):
        write(request)
        return real(request, user)

    monkeypatch.setattr(api, "user_json", writing_view)


def display_name(dbsession, user) -> str:
    return dbsession.scalar(select(User.display_name).where(User.id == user.id))


def test_a_get_view_cannot_write_through_request_dbsession(testapp, users, fred_cookie, monkeypatch, dbsession):
    refused = []

    def write(request):
        try:
            request.dbsession.execute(update(User).where(User.id == request.user.id).values(display_name="changed"))
        except ReadOnlySessionError as error:
            refused.append(error)
            raise

    write_in_view(monkeypatch, write)
    testapp.get(MYSELF, headers=fred_cookie, status=500)
    assert refused and display_name(dbsession, users["fred"]) == "Fred Developer"


def test_a_get_view_cannot_flush_a_change_through_request_dbsession(testapp, users, fred_cookie, monkeypatch, dbsession):
    def write(request):
        user = request.dbsession.get(User, request.user.id)
        user.display_name = "changed"
        request.dbsession.flush()

    write_in_view(monkeypatch, write)
    testapp.get(MYSELF, headers=fred_cookie, status=500)
    assert display_name(dbsession, users["fred"]) == "Fred Developer"


def test_a_change_a_get_view_never_flushed_is_discarded_and_logged(
    testapp, users, fred_cookie, monkeypatch, dbsession, caplog
):
    def write(request):
        request.dbsession.get(User, request.user.id).display_name = "changed"

    write_in_view(monkeypatch, write)
    with caplog.at_level(logging.ERROR, logger="appserver.models"):
        testapp.get(MYSELF, headers=fred_cookie)
    assert "discarded" in caplog.text
    assert display_name(dbsession, users["fred"]) == "Fred Developer"


def test_a_get_reads_through_a_session_closed_when_it_ends(testapp, users, fred_cookie, monkeypatch):
    sessions = []

    def read(request):
        assert request.dbsession.get(User, request.user.id).username == "fred"
        assert request.dbsession.info[READ_ONLY]
        sessions.append(request.dbsession)

    write_in_view(monkeypatch, read)
    testapp.get(MYSELF, headers=fred_cookie)
    (session,) = sessions
    assert not session.in_transaction() and not list(session)


def test_a_get_writes_in_units_even_after_reading(testapp, users, fred_cookie, monkeypatch, dbsession):
    """The unit-order rule guards the request's transaction; a read-only session holds no
    lock, so a safe request may write in a unit after it has read."""

    def write(request):
        request.dbsession.get(User, request.user.id)  # the read-only session has begun
        with writing(request) as db:
            db.execute(update(User).where(User.id == request.user.id).values(display_name="by a unit"))

    write_in_view(monkeypatch, write)
    testapp.get(MYSELF, headers=fred_cookie)
    assert display_name(dbsession, users["fred"]) == "by a unit"


def test_a_unit_after_the_requests_transaction_began_is_still_refused(app_request, users):
    app_request.dbsession.scalar(select(User.id).limit(1))  # pyramid_tm's session has begun
    with pytest.raises(UnitOrderError):
        with unit(app_request):
            pass


def test_writing_outside_a_safe_request_is_the_requests_own_transaction(app_request, users):
    with writing(app_request) as db:
        assert db is app_request.dbsession


def test_the_session_lookup_yields_detached_rows_the_request_adopts_without_sql(
    app, app_request, users, count_statements
):
    fred = users["fred"]
    issued = SessionStore.of(app_request).issue(fred)
    app_request.dbsession.flush()

    env = prepare(registry=app.registry)
    try:
        request = env["request"]
        request.environ[READ_ONLY] = True
        with unit(request) as db:
            lookup = SessionStore.of(request, db).lookup(issued.token)
        session, user = lookup.session, lookup.user
        assert (user.id, user.username, user.display_name, user.admin) == (fred.id, "fred", "Fred Developer", False)
        assert (session.id, session.token_hash, session.user) == (issued.session.id, hash_token(issued.token), user)
        count_statements.reset()
        db = request.dbsession
        assert attach(db, user) is user and attach(db, session) is session
        assert not db.dirty and not db.new
        db.flush()
        assert user.username == "fred" and session.expires_at == issued.session.expires_at
        assert len(count_statements) == 0, count_statements.statements
        assert db.get(UserSession, session.id) is session
    finally:
        env["closer"]()
