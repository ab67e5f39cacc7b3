"""The load budget (issue 2, acceptance 5; session-security item 20): an authenticated GET
costs at most two SQL statements, and ``last_seen_at`` is written at most once per touch
interval, not on every request. Counted with a ``before_cursor_execute`` listener."""
from __future__ import annotations

import base64
import re

import pytest

TOUCH_INTERVAL = 60  # tests/support.py base_settings
SESSION_UPDATE = re.compile(r"^\s*UPDATE\s+sessions\b", re.IGNORECASE)


def session_updates(counter) -> int:
    return sum(1 for statement in counter.statements if SESSION_UPDATE.match(statement))


@pytest.mark.parametrize("path", ["/rest/api/2/myself", "/rest/auth/1/session", "/rest/api/2/serverInfo", "/"])
def test_an_authenticated_get_costs_at_most_two_statements(testapp, fred_cookie, count_statements, clock, path):
    count_statements.reset()
    response = testapp.get(path, headers=fred_cookie)
    assert response.headers["X-AUSERNAME"] == "fred"
    assert len(count_statements) <= 2, count_statements.statements
    assert len(count_statements) == 1  # inside the touch interval: the lookup alone

    clock.advance(TOUCH_INTERVAL)
    count_statements.reset()
    testapp.get(path, headers=fred_cookie)
    assert len(count_statements) == 2, count_statements.statements  # lookup + the touch
    assert session_updates(count_statements) == 1


def test_a_hundred_gets_within_the_touch_interval_write_the_session_at_most_once(
    testapp, fred_cookie, count_statements, clock
):
    clock.advance(TOUCH_INTERVAL)  # the first of the hundred is due to touch
    count_statements.reset()
    for _ in range(100):
        testapp.get("/rest/api/2/myself", headers=fred_cookie)
        clock.advance((TOUCH_INTERVAL - 1) / 100)
    assert session_updates(count_statements) == 1
    assert len(count_statements) == 101  # a SELECT each, one UPDATE
    assert all(statement.lstrip().upper().startswith(("SELECT", "UPDATE")) for statement in count_statements.statements)


def test_touches_follow_the_interval_over_an_hour(testapp, fred_cookie, count_statements, clock):
    count_statements.reset()
    for _ in range(360):  # a request every 10 s for an hour
        clock.advance(10)
        testapp.get("/rest/api/2/myself", headers=fred_cookie)
    assert session_updates(count_statements) == 3600 // TOUCH_INTERVAL


def test_a_basic_authenticated_get_costs_at_most_two_statements_and_writes_nothing(
    testapp, users, count_statements
):
    headers = {"Authorization": "Basic " + base64.b64encode(b"fred:fred-password").decode()}
    testapp.get("/rest/api/2/myself", headers=headers)  # warm-up: a first login may upgrade
    count_statements.reset()
    for _ in range(5):
        assert testapp.get("/rest/api/2/myself", headers=headers).json["name"] == "fred"
    assert len(count_statements) <= 2 * 5, count_statements.statements
    assert len(count_statements) == 5  # steady: the one SELECT of the user, no write
    assert not [s for s in count_statements.statements if not s.lstrip().upper().startswith("SELECT")]


def test_a_steady_basic_get_costs_no_password_hash(testapp, users, app):
    headers = {"Authorization": "Basic " + base64.b64encode(b"fred:fred-password").decode()}
    testapp.get("/rest/api/2/myself", headers=headers)
    hashes = app.registry.passwords.hash_count
    for _ in range(5):
        testapp.get("/rest/api/2/myself", headers=headers)
    assert app.registry.passwords.hash_count == hashes


def test_an_anonymous_get_costs_no_statement(testapp, count_statements):
    count_statements.reset()
    testapp.get("/rest/api/2/serverInfo")
    testapp.get("/")
    testapp.get("/login")
    assert len(count_statements) == 0, count_statements.statements


def test_no_credential_source_is_asked_without_an_authorization_or_cookie_header(app, testapp, monkeypatch):
    """The anonymous shortcut: every credential arrives in one of those two headers."""
    policy = app.registry.security_policy
    asked = []
    for source in (policy.basic, policy.bearer, policy.session, policy.remember_me):
        monkeypatch.setattr(source, "authenticate", lambda *args, _source=source: asked.append(_source))
    testapp.get("/rest/api/2/serverInfo")
    testapp.get("/login")
    assert asked == []
    testapp.get("/rest/api/2/serverInfo", headers={"Cookie": "unrelated=1"})
    testapp.get("/rest/api/2/serverInfo", headers={"Authorization": "Negotiate abc"})
    assert len(asked) == 8


TOKEN_UPDATE = re.compile(r"^\s*UPDATE\s+personal_tokens\b", re.IGNORECASE)


@pytest.fixture
def fred_bearer(app_request, users) -> dict[str, str]:
    from appserver.security import personal_tokens

    raw = personal_tokens.create(app_request, users["fred"], "budget", 30).raw
    return {"Authorization": f"Bearer {raw}"}


@pytest.mark.parametrize("path", ["/rest/api/2/myself", "/rest/auth/1/session", "/rest/api/2/serverInfo", "/"])
def test_a_bearer_get_costs_one_select_and_writes_nothing_in_the_steady_state(
    testapp, fred_bearer, count_statements, clock, path
):
    testapp.get(path, headers=fred_bearer)  # the first use records lastAccessedAt
    count_statements.reset()
    for _ in range(5):
        clock.advance((TOUCH_INTERVAL - 1) / 5)
        response = testapp.get(path, headers=fred_bearer)
        assert response.headers["X-AUSERNAME"] == "fred" and "Set-Cookie" not in response.headers
    assert len(count_statements) == 5, count_statements.statements  # one SELECT each
    assert all(s.lstrip().upper().startswith("SELECT") for s in count_statements.statements)
    assert all("JOIN users" in s and "personal_tokens" in s for s in count_statements.statements)

    clock.advance(1)  # the touch interval has passed since the first use
    count_statements.reset()
    testapp.get(path, headers=fred_bearer)
    assert len(count_statements) == 2, count_statements.statements  # the lookup + the touch
    assert sum(1 for s in count_statements.statements if TOKEN_UPDATE.match(s)) == 1


def test_a_hundred_bearer_gets_write_last_accessed_at_most_once_and_no_session(
    testapp, fred_bearer, count_statements, clock
):
    count_statements.reset()
    for _ in range(100):
        testapp.get("/rest/api/2/myself", headers=fred_bearer)
        clock.advance((TOUCH_INTERVAL - 1) / 100)
    writes = [s for s in count_statements.statements if not s.lstrip().upper().startswith("SELECT")]
    assert len(writes) == 1 and TOKEN_UPDATE.match(writes[0]), writes
    assert len(count_statements) == 101
    assert session_updates(count_statements) == 0


@pytest.fixture
def objects_made(monkeypatch) -> list:
    """Every pair of ORM objects made from a session lookup's row."""
    from appserver.security import sessions

    made: list = []
    rows = sessions._SESSION_ROWS

    class Counting:
        def __getattr__(self, name):
            return getattr(rows, name)

        def load(self, row):
            made.append(row)
            return rows.load(row)

    monkeypatch.setattr(sessions, "_SESSION_ROWS", Counting())
    return made


def test_a_steady_cookie_get_of_myself_makes_no_orm_object(testapp, fred_cookie, objects_made, clock):
    """Who the request is, its principals, ``X-AUSERNAME`` and ``GET myself`` come from the
    lookup's row; the session and user objects are made only when something needs them."""
    response = testapp.get("/rest/api/2/myself", headers=fred_cookie)
    assert response.json["name"] == "fred" and response.json["emailAddress"] == "fred@example.com"
    assert response.headers["X-AUSERNAME"] == "fred"
    assert objects_made == []

    clock.advance(TOUCH_INTERVAL)  # the touch writes through the session object
    testapp.get("/rest/api/2/myself", headers=fred_cookie)
    assert len(objects_made) == 1


def test_a_page_makes_the_objects_it_shows(testapp, fred_cookie, objects_made):
    """``request.user`` is the ORM object, made on first use: a page gets what it always got."""
    page = testapp.get("/", headers=fred_cookie)
    assert "Fred" in page.text
    assert len(objects_made) == 1
