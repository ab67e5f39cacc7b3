"""Requests that overlap (issue 9, items 2-4): real waitress servers, many parallel clients,
and invariants checked afterwards, on SQLite and PostgreSQL.

- The lock-out is atomic: however many attempts arrive at once, at most
  ``max_failures - failures_so_far`` passwords are checked; the rest are denied unchecked.
- SQLite takes concurrent users: parallel logins all succeed, and a storm of failed logins
  neither turns good logins into errors nor goes uncounted.
- A burst locks an account for the first cool-down only, and no cool-down exceeds the cap.
- A transient database error (SQLite busy, a serialization failure, a cut connection) runs
  the request again instead of answering 503.
"""
from __future__ import annotations

import itertools
import logging
import secrets
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import urljoin

import pytest
import requests
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select, update

from appserver.models import AuthEvent, LoginThrottle, User, transient_kind

from .conftest import DATABASES
from .support import DriverStatements, create_user, postgresql_live_server, wait_until_blocked

MAX_FAILURES = 3  # the default of appserver.login.max_failures
_names = itertools.count(1)


@pytest.fixture(scope="module")
def servers(live_server_factory):
    """Two app instances (as two processes would be) on one database, 8 threads each."""
    return [live_server_factory(threads=8), live_server_factory(threads=8)]


def new_user(server, password: str = "right-password-1", **values) -> str:
    username = f"cc{next(_names)}"
    with server.request() as request:
        create_user(request, username, password)
        if values:
            request.dbsession.execute(update(User).where(User.username == username).values(**values))
    return username


def hashes(servers) -> int:
    return sum(server.app.registry.passwords.hash_count for server in servers)


def at_once(count: int, send: Callable[[int], requests.Response]) -> list[requests.Response]:
    """Send ``count`` requests from as many threads, released together by a barrier."""
    barrier = threading.Barrier(count)

    def run(index: int) -> requests.Response:
        barrier.wait()
        return send(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def rest_login(server, username: str, password: str) -> requests.Response:
    return requests.post(
        server.url + "/rest/auth/1/session", json={"username": username, "password": password}, timeout=60
    )


@pytest.mark.parametrize("failures_so_far", [0, 2])
def test_parallel_wrong_logins_check_at_most_the_remaining_budget(servers, failures_so_far):
    for server in servers:
        server.clock.current = servers[0].clock.current
    username = new_user(servers[0], current_failed_logins=failures_so_far)
    budget = MAX_FAILURES - failures_so_far
    before = hashes(servers)
    answers = at_once(12, lambda i: rest_login(servers[i % 2], username, f"wrong-{i}"))
    checked = hashes(servers) - before
    statuses = Counter(answer.status_code for answer in answers)
    assert checked <= budget, f"{checked} passwords checked, the budget was {budget}"
    assert statuses[401] == checked
    assert statuses[403] == 12 - checked
    for answer in answers:
        if answer.status_code == 403:
            assert answer.headers["X-Seraph-LoginReason"] == "AUTHENTICATION_DENIED"
            assert answer.headers["X-Authentication-Denied-Reason"].startswith("TOO_MANY_FAILED_LOGINS")
            assert 1 <= int(answer.headers["Retry-After"]) <= 60
    with servers[0].request() as request:
        user = request.dbsession.scalar(select(User).where(User.username == username))
        assert user.current_failed_logins == MAX_FAILURES
        assert user.total_failed_logins == checked


def test_a_right_guess_logs_in_only_if_checked_within_the_budget(servers):
    """Two failures recorded; ten wrong guesses and the right one at once. The right one logs
    in only if it was checked before the budget was spent, that is first (a right password
    starts the count again, so up to three wrong ones may follow it); otherwise exactly one
    wrong password is checked and everything else, the right one included, is denied."""
    username = new_user(servers[0], current_failed_logins=MAX_FAILURES - 1)
    before = hashes(servers)
    guesses = [f"wrong-{i}" for i in range(10)] + ["right-password-1"]
    answers = at_once(len(guesses), lambda i: rest_login(servers[i % 2], username, guesses[i]))
    checked = hashes(servers) - before
    statuses = Counter(answer.status_code for answer in answers)
    if answers[-1].status_code == 200:
        assert statuses[401] == checked - 1 <= MAX_FAILURES
    else:
        assert answers[-1].status_code == 403
        assert checked == statuses[401] == 1
    assert statuses[403] == len(guesses) - checked


def test_unknown_names_are_locked_atomically_too(servers):
    name = f"nobody-{secrets.token_hex(4)}"
    before = hashes(servers)
    answers = at_once(12, lambda i: rest_login(servers[i % 2], name, f"guess-{i}"))
    assert hashes(servers) - before <= MAX_FAILURES
    assert Counter(a.status_code for a in answers)[403] >= 12 - MAX_FAILURES


def test_concurrent_correct_logins_all_succeed(servers):
    users = [new_user(servers[0]) for _ in range(12)]
    answers = at_once(12, lambda i: rest_login(servers[i % 2], users[i], "right-password-1"))
    assert [a.status_code for a in answers] == [200] * 12, [a.text for a in answers if a.status_code != 200]


def test_parallel_logins_of_one_user_are_all_counted(servers):
    """Each login adds one to the account's login count, from the row as it is once locked,
    not as the password check read it before: none of twelve at once is lost."""
    username = new_user(servers[0])
    answers = at_once(12, lambda i: rest_login(servers[i % 2], username, "right-password-1"))
    assert [a.status_code for a in answers] == [200] * 12
    assert sorted(a.json()["loginInfo"]["loginCount"] for a in answers) == list(range(1, 13))
    with servers[0].request() as request:
        assert request.dbsession.scalar(select(User.login_count).where(User.username == username)) == 12


def test_parallel_token_creations_never_pass_the_limit(servers):
    """The per-user limit of personal access tokens is counted, then a token is added: two
    creations that count at once must not both find room for the last one."""
    username = new_user(servers[0])
    limit = servers[0].app.registry.appserver_settings.tokens_per_user
    burst = limit + 6

    def create(i: int) -> requests.Response:
        return requests.post(
            servers[i % 2].url + "/rest/pat/latest/tokens",
            json={"name": f"parallel {i}", "expirationDuration": 1},
            headers=basic_header(username, "right-password-1"),
            timeout=60,
        )

    answers = at_once(burst, create)
    assert Counter(a.status_code for a in answers) == {201: limit, 400: burst - limit}, [
        a.text for a in answers if a.status_code not in (201, 400)]
    refused = next(a for a in answers if a.status_code == 400).json()
    assert f"{limit} tokens" in refused["errorMessages"][0]
    with servers[0].request() as request:
        user = request.dbsession.scalar(select(User).where(User.username == username))
        assert request.token_store.usable_count(user.id) == limit


def events_of(server, username: str, event: str) -> int:
    """How many audit rows of ``event`` the user has."""
    with server.engine.connect() as connection:
        return connection.execute(
            select(func.count()).select_from(AuthEvent).join(User, AuthEvent.user_id == User.id)
            .where(User.username == username, AuthEvent.event == event)
        ).scalar()


def audit_rows(server, username: str, event: str) -> list[tuple[int, int]]:
    """(id, repeats) of the user's audit rows of ``event``."""
    with server.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(
            select(AuthEvent.id, AuthEvent.repeats).join(User, AuthEvent.user_id == User.id)
            .where(User.username == username, AuthEvent.event == event)
        )]


def test_one_account_form_sent_several_times_at_once_makes_one_token(servers):
    """A double (or sextuple) click on Create token: each copy carries the same newest-token
    id, and the check runs under the account's row lock, so one copy makes the token and the
    others are told it was made (409), across processes."""
    import re

    username = new_user(servers[0])
    session = rest_login(servers[0], username, "right-password-1").json()["session"]
    cookie = {"Cookie": f"{session['name']}={session['value']}"}
    page = requests.get(servers[0].url + "/account", headers=cookie, timeout=60).text
    fields = {name: re.search(rf'name="{name}" value="([^"]*)"', page).group(1) for name in ("csrf_token", "sent_after")}
    answers = at_once(6, lambda i: requests.post(
        servers[i % 2].url + "/account/tokens", data={**fields, "name": "clicked", "expiration_days": "1"},
        headers=cookie, timeout=60))
    assert Counter(a.status_code for a in answers) == {200: 1, 409: 5}
    with servers[0].request() as request:
        user = request.dbsession.scalar(select(User).where(User.username == username))
        assert request.token_store.usable_count(user.id) == 1


@pytest.mark.parametrize("credential", ["revoked token", "logged-out session cookie"])
def test_parallel_replays_of_a_dead_credential_are_audited_on_one_row(servers, credential):
    """Sixteen uses at once of a revoked token (or of a session cookie logged out): every
    one a 401, and one audit row with the other fifteen counted on it, as for replays one
    at a time. Before, each parallel replay found no row yet and added one (2-4 rows on
    PostgreSQL)."""
    username = new_user(servers[0])
    if credential == "revoked token":
        made = requests.post(servers[0].url + "/rest/pat/latest/tokens", timeout=60,
                             json={"name": "replayed", "expirationDuration": 1},
                             headers=basic_header(username, "right-password-1"))
        revoked = requests.delete(servers[0].url + "/rest/pat/latest/tokens/" + str(made.json()["id"]),
                                  headers=basic_header(username, "right-password-1"), timeout=60)
        assert revoked.status_code == 204
        headers, event = {"Authorization": "Bearer " + made.json()["rawToken"]}, "token.refused"
    else:
        session = rest_login(servers[0], username, "right-password-1").json()["session"]
        headers = {"Cookie": f"{session['name']}={session['value']}"}
        assert requests.delete(servers[0].url + "/rest/auth/1/session", headers=headers, timeout=60).status_code == 204
        event = "session.expired"
    answers = at_once(16, lambda i: requests.get(
        servers[i % 2].url + "/rest/api/2/myself", headers=headers, timeout=60))
    assert [a.status_code for a in answers] == [401] * 16
    rows = audit_rows(servers[0], username, event)
    assert len(rows) == 1 and rows[0][1] == 15, rows


def test_parallel_revocations_of_one_token_are_audited_once(servers):
    """Eight DELETEs of one token at once: every one answers 204 (as Jira does for a token
    already gone), and the audit trail says once that it was revoked."""
    username = new_user(servers[0])
    made = requests.post(servers[0].url + "/rest/pat/latest/tokens", timeout=60,
                         json={"name": "once", "expirationDuration": 1},
                         headers=basic_header(username, "right-password-1"))
    assert made.status_code == 201
    url = "/rest/pat/latest/tokens/" + str(made.json()["id"])
    answers = at_once(8, lambda i: requests.delete(
        servers[i % 2].url + url, headers=basic_header(username, "right-password-1"), timeout=60))
    assert [a.status_code for a in answers] == [204] * 8
    assert events_of(servers[0], username, "token.revoked") == 1


def test_parallel_log_outs_of_one_session_are_audited_once(servers):
    """A double click on Log out, two tabs: every DELETE answers 204, the session is gone,
    and the audit trail says once that its owner logged out."""
    username = new_user(servers[0])
    token = rest_login(servers[0], username, "right-password-1").json()["session"]["value"]
    cookie = {"Cookie": f"appserver.session={token}"}
    answers = at_once(6, lambda i: requests.delete(servers[i % 2].url + "/rest/auth/1/session",
                                                   headers=cookie, timeout=60))
    assert {a.status_code for a in answers} <= {204, 401}, [a.text for a in answers]
    assert requests.get(servers[0].url + "/rest/api/2/myself", headers=cookie, timeout=60).status_code == 401
    assert events_of(servers[0], username, "logout") == 1


def test_parallel_password_changes_of_one_account_one_wins(servers):
    """Sessions of one account change its password at once, each proving the current one.
    The first change revokes the other sessions and makes the old password wrong: the
    others, checked before it committed, must not go on to set theirs (whoever knew the
    old password could otherwise outrace the owner who is locking them out)."""
    username = new_user(servers[0])
    cookies = []
    for i in range(6):
        session = rest_login(servers[i % 2], username, "right-password-1").json()["session"]
        cookies.append({"Cookie": f"{session['name']}={session['value']}"})

    def change(i: int) -> requests.Response:
        return requests.put(
            servers[i % 2].url + "/rest/api/2/myself/password",
            json={"currentPassword": "right-password-1", "password": f"new-password-{i}"},
            headers=cookies[i],
            timeout=60,
        )

    answers = at_once(6, change)
    statuses = [a.status_code for a in answers]
    assert statuses.count(204) == 1, [(a.status_code, a.text) for a in answers]
    assert set(statuses) <= {204, 401, 403}, statuses  # refused, or already logged out
    winner = statuses.index(204)
    with servers[0].request() as request:  # not by logging in: the losers' checks that came
        # after the change presented a wrong password, and may have locked the account
        stored = request.dbsession.scalar(select(User.password_hash).where(User.username == username))
    passwords = servers[0].app.registry.passwords
    assert [passwords.verify(f"new-password-{i}", stored)[0] for i in range(6)] == [i == winner for i in range(6)]
    # The losers' sessions are gone; the winner's cookie was rotated by its answer.
    for i in range(6):
        if i != winner:
            assert requests.get(servers[0].url + "/rest/api/2/myself", headers=cookies[i],
                                timeout=60).status_code == 401


def submit(client: requests.Session, page: requests.Response, form_id: str, **fields: str) -> requests.Response:
    """Post the form ``form_id`` of ``page`` as a browser would: its hidden fields (the CSRF
    token) and ``fields``."""
    from bs4 import BeautifulSoup

    form = BeautifulSoup(page.text, "html.parser").find("form", id=form_id)
    data = {i["name"]: i.get("value", "") for i in form.find_all("input", type="hidden")}
    return client.post(urljoin(page.url, form["action"]), data={**data, **fields},
                       allow_redirects=False, timeout=60)


def administrator(server) -> requests.Session:
    """The demo administrator, logged in through the form, with WebSudo confirmed."""
    client = requests.Session()
    login = submit(client, client.get(server.url + "/login", timeout=60), "login-form",
                   os_username="admin", os_password="admin-password")
    assert login.status_code == 303, login.text
    prompt = client.get(server.url + "/websudo", params={"os_destination": "/admin/users"}, timeout=60)
    assert submit(client, prompt, "websudo-form", websudo_password="admin-password").status_code == 303
    return client


def test_parallel_creations_of_one_username_make_one_account(servers):
    """Two administrators (or one double submit) create the same account at once: both find
    the name free, both add it; the second is told it exists, not given a 500."""
    admins = [administrator(servers[i % 2]) for i in range(4)]
    pages = [admin.get(servers[i % 2].url + "/admin/users", timeout=60) for i, admin in enumerate(admins)]
    username = f"twin{next(_names)}"
    answers = at_once(4, lambda i: submit(
        admins[i], pages[i], "create-user-form", username=username, password="twin-password-1"))
    assert sorted(a.status_code for a in answers) == [303, 400, 400, 400], [
        a.text[-400:] for a in answers if a.status_code not in (303, 400)]
    assert all("already exists" in a.text for a in answers if a.status_code == 400)
    with servers[0].request() as request:
        assert request.dbsession.scalar(
            select(func.count()).select_from(User).where(User.username == username)) == 1


def test_concurrent_form_logins_of_one_user_all_succeed(servers):
    username = new_user(servers[0])

    def form_login(i: int) -> requests.Response:
        client = requests.Session()
        page = client.get(servers[i % 2].url + "/login", timeout=60)
        return submit(client, page, "login-form", os_username=username, os_password="right-password-1")

    answers = at_once(12, form_login)
    assert [a.status_code for a in answers] == [303] * 12


def test_a_known_password_never_wipes_a_failure_counted_after_it_was_read(servers, monkeypatch):
    """The owner's Basic client (its password verified before, so no hash and no row lock)
    read the account with two failures; before it starts the count again, a guess commits
    the third, which locks the account. The lock stands: the client is denied like anyone
    else. Before, its reset wiped every lock-out its parallel guessers committed."""
    from appserver.security import login

    server = servers[0]
    username = new_user(server)
    url = server.url + "/rest/api/2/myself"
    assert requests.get(url, auth=(username, "right-password-1"), timeout=30).status_code == 200
    with server.engine.begin() as connection:
        connection.execute(update(User).where(User.username == username).values(current_failed_logins=2))
    real = login.locked_for
    guessed = threading.Event()

    def a_guess_commits_meanwhile(request, user):
        if user.username == username and not guessed.is_set():
            guessed.set()
            with server.engine.begin() as connection:
                connection.execute(
                    update(User).where(User.username == username)
                    .values(current_failed_logins=MAX_FAILURES, locked_until=server.clock.now() + timedelta(seconds=60))
                )
        return real(request, user)

    monkeypatch.setattr(login, "locked_for", a_guess_commits_meanwhile)
    answer = requests.get(url, auth=(username, "right-password-1"), timeout=30)
    assert guessed.is_set()
    assert answer.status_code == 403, answer.text
    assert answer.headers["X-Authentication-Denied-Reason"].startswith("TOO_MANY_FAILED_LOGINS")
    with server.engine.connect() as connection:
        count, locked_until = connection.execute(
            select(User.current_failed_logins, User.locked_until).where(User.username == username)
        ).one()
    assert count == MAX_FAILURES and locked_until is not None


def test_a_failed_login_storm_leaves_good_logins_alone_and_is_counted(servers):
    users = [new_user(servers[0]) for _ in range(12)]
    storm_answers: list[int] = []
    stop = threading.Event()
    storm_names: list[str] = []

    def storm(index: int) -> None:
        for n in range(40):  # bounded: at most 40 requests per thread
            if stop.is_set():
                return
            name = f"storm-{index}-{n}-{secrets.token_hex(3)}"
            storm_names.append(name)
            storm_answers.append(rest_login(servers[n % 2], name, "guess").status_code)

    with ThreadPoolExecutor(3) as attackers:
        for index in range(3):
            attackers.submit(storm, index)
        with ThreadPoolExecutor(4) as pool:
            good = list(pool.map(lambda i: rest_login(servers[i % 2], users[i], "right-password-1"), range(12)))
        stop.set()
    assert [a.status_code for a in good] == [200] * 12
    assert set(storm_answers) == {401}, Counter(storm_answers)
    with servers[0].request() as request:
        counted = request.dbsession.scalar(
            select(func.count()).select_from(AuthEvent).where(
                AuthEvent.event == "login.failed", AuthEvent.detail == "rest: unknown user",
                AuthEvent.occurred_at == servers[0].clock.now(),
            )
        )
        throttles = request.dbsession.scalar(select(func.count()).select_from(LoginThrottle).where(LoginThrottle.current_failed_logins >= 1))
    assert counted >= len(storm_answers)
    assert throttles >= len(storm_answers)


def test_a_burst_locks_for_the_first_cool_down_only(servers):
    username = new_user(servers[0])
    answers = at_once(10, lambda i: rest_login(servers[i % 2], username, f"wrong-{i}"))
    retry_after = [int(a.headers["Retry-After"]) for a in answers if a.status_code == 403]
    assert retry_after and max(retry_after) <= 60
    with servers[0].request() as request:
        user = request.dbsession.scalar(select(User).where(User.username == username))
        assert user.locked_until - servers[0].clock.now() <= timedelta(seconds=60)


def test_no_cool_down_exceeds_the_cap(testapp, users, clock):
    """Failure after failure, each after its cool-down: 60, 120, ... capped at 900 seconds."""
    seen = []
    for _ in range(MAX_FAILURES):
        testapp.post_json("/rest/auth/1/session", {"username": "fred", "password": "wrong"}, status=401)
    for _ in range(8):
        denied = testapp.post_json("/rest/auth/1/session", {"username": "fred", "password": "x"}, status=403)
        seen.append(int(denied.headers["Retry-After"]))
        clock.advance(seen[-1])
        testapp.post_json("/rest/auth/1/session", {"username": "fred", "password": "wrong"}, status=401)
    assert seen == [60, 120, 240, 480, 900, 900, 900, 900]


TOUCH_INTERVAL = 60  # tests/support.py base_settings


def test_requests_due_for_the_same_touch_write_it_once_per_process(servers, monkeypatch):
    """Every request that looked the session up before its touch committed finds the touch
    due; only one per process writes it (appserver/security/touches.py). Each touch here
    waits until every request of the burst has looked the session up, so without the claim
    all 16 would write (and queue on the row's lock)."""
    from sqlalchemy import event

    from appserver.models import UserSession
    from appserver.security.sessions import SessionStore

    for server in servers:
        server.clock.current = servers[0].clock.current
    username = new_user(servers[0])
    login = rest_login(servers[0], username, "right-password-1")
    cookie = {"Cookie": f"{login.json()['session']['name']}={login.json()['session']['value']}"}
    for server in servers:
        server.clock.advance(TOUCH_INTERVAL)

    burst = 16
    lookups = [0]
    looked_up = threading.Condition()
    original_lookup, original_touch = SessionStore.lookup, SessionStore.touch

    def lookup(self, token):
        try:
            return original_lookup(self, token)
        finally:
            with looked_up:
                lookups[0] += 1
                looked_up.notify_all()

    def touch(self, session):
        # Hold the touch until the whole burst has read the old last_seen_at.
        with looked_up:
            looked_up.wait_for(lambda: lookups[0] >= burst, timeout=20)
        return original_touch(self, session)

    monkeypatch.setattr(SessionStore, "lookup", lookup)
    monkeypatch.setattr(SessionStore, "touch", touch)
    updates: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE SESSIONS"):
            updates.append(statement)

    for server in servers:
        event.listen(server.engine, "before_cursor_execute", count)
    try:
        answers = at_once(
            burst,
            lambda i: requests.get(servers[i % 2].url + "/rest/api/2/myself", headers=cookie, timeout=60),
        )
    finally:
        for server in servers:
            event.remove(server.engine, "before_cursor_execute", count)
    assert [a.status_code for a in answers] == [200] * burst
    assert {a.headers["X-AUSERNAME"] for a in answers} == {username}
    assert 1 <= len(updates) <= len(servers), updates  # one per process at most
    with servers[0].request() as request:
        seen = request.dbsession.scalar(
            select(UserSession.last_seen_at).where(
                UserSession.revoked_at.is_(None), UserSession.user.has(username=username)
            )
        )
    assert seen == servers[0].clock.current  # the touch did happen


def test_parallel_first_basic_requests_of_a_client_hash_once(servers, monkeypatch):
    """A Basic client's first requests arrive together, miss the credential cache and queue
    on the account's row lock; the first verifies the password, the others find it verified
    when their turn comes (login.py) instead of each running argon2 again."""
    server = servers[0]
    username = new_user(server)
    passwords = server.app.registry.passwords
    prechecks = [0]
    checked = threading.Condition()
    original_before, original_verify = passwords.verified_before, passwords.verify

    def verified_before(*args):
        with checked:
            prechecks[0] += 1
            checked.notify_all()
        return original_before(*args)

    def verify(*args):
        # Hash only once every request of the burst has missed the cache.
        with checked:
            checked.wait_for(lambda: prechecks[0] >= burst, timeout=20)
        return original_verify(*args)

    monkeypatch.setattr(passwords, "verified_before", verified_before)
    monkeypatch.setattr(passwords, "verify", verify)
    burst = 8
    before = passwords.hash_count
    answers = at_once(
        burst,
        lambda i: requests.get(
            server.url + "/rest/api/2/myself", headers=basic_header(username, "right-password-1"), timeout=60
        ),
    )
    assert [a.status_code for a in answers] == [200] * burst
    assert passwords.hash_count - before == 1


def test_a_steady_cookie_request_reads_with_one_statement_and_no_transaction(servers):
    """On a real engine (a live server, not the tests' connection), the session lookup is
    one SELECT with no BEGIN before it and no ROLLBACK after it, as the database sees it:
    PostgreSQL runs it in autocommit, SQLite without an explicit BEGIN
    (appserver.models.prepared)."""
    server = servers[0]
    username = new_user(server)
    login = rest_login(server, username, "right-password-1")
    cookie = {"Cookie": f"{login.json()['session']['name']}={login.json()['session']['value']}"}
    with DriverStatements(server.engine) as driver:
        answer = requests.get(server.url + "/rest/api/2/myself", headers=cookie, timeout=60)
    assert answer.status_code == 200 and answer.headers["X-AUSERNAME"] == username
    assert driver.verbs() == ["SELECT"], driver.seen
    assert "FROM sessions JOIN users" in driver.statements[0]
    if server.engine.dialect.name == "postgresql":
        assert driver.seen[0][1] is True  # psycopg sends no BEGIN and no ROLLBACK in autocommit


@pytest.mark.parametrize("kind", ["basic", "bearer"])
def test_a_steady_basic_or_bearer_request_reads_with_one_statement_and_no_transaction(servers, kind):
    """The same as the driver sees it for the other credentials: a steady Basic request
    reads the account, a Bearer request the token joined with its owner; one SELECT each,
    no BEGIN, no write."""
    server = servers[0]
    username = new_user(server)
    headers = basic_header(username, "right-password-1")
    if kind == "bearer":
        made = requests.post(server.url + "/rest/pat/latest/tokens", timeout=60,
                             json={"name": "steady", "expirationDuration": 1}, headers=headers)
        headers = {"Authorization": "Bearer " + made.json()["rawToken"]}
    for _ in range(2):  # steady: the credential cache warm, the token's first use noted
        assert requests.get(server.url + "/rest/api/2/myself", headers=headers, timeout=60).status_code == 200
    with DriverStatements(server.engine) as driver:
        answer = requests.get(server.url + "/rest/api/2/myself", headers=headers, timeout=60)
    assert answer.status_code == 200 and answer.headers["X-AUSERNAME"] == username
    assert driver.verbs() == ["SELECT"], driver.seen
    assert ("FROM personal_tokens JOIN users" if kind == "bearer" else "FROM users") in driver.statements[0]
    if server.engine.dialect.name == "postgresql":
        assert driver.seen[0][1] is True


@pytest.mark.skipif("postgresql" not in DATABASES, reason="SQLite serializes writing units: no advisory lock")
def test_a_denied_request_takes_the_account_before_the_audit_lock():
    """A password check that finds the account locked holds its row, then writes
    ``login.denied`` under the event's advisory lock; the owner's Basic client (its password
    verified before) writes the same event without the row. It took the event's lock first
    and then, inserting a row that refers to the account, waited for the row: a deadlock
    (an outside review: 11 in 15 rounds). Here the check holding the row is this test's own
    transaction, with the shorter deadlock timeout, so that PostgreSQL would abort it."""
    with postgresql_live_server("audit_lock") as server:
        denied_twice_without_a_deadlock(server)


def denied_twice_without_a_deadlock(server) -> None:
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from appserver.security import audit
    from appserver.security.audit import Event

    username = new_user(server)
    headers = basic_header(username, "right-password-1")
    assert requests.get(server.url + "/rest/api/2/myself", headers=headers, timeout=60).status_code == 200
    with server.request() as request:  # locked since, by parallel guesses (say)
        request.dbsession.execute(update(User).where(User.username == username)
                                  .values(locked_until=server.clock.current + timedelta(minutes=5)))
    with server.engine.connect() as connection:
        connection.execute(text("SET deadlock_timeout = '50ms'"))
        connection.commit()
        user = connection.execute(select(User).where(User.username == username).with_for_update()).one()
        started = threading.Event()

        def owner():
            started.set()
            return requests.get(server.url + "/rest/api/2/myself", headers=headers, timeout=60)

        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(owner)
            wait_until_blocked(server, started)
            with server.request() as request:  # the check holding the row records its denial
                request.environ["REMOTE_ADDR"] = "127.0.0.1"
                db = Session(bind=connection)
                audit.record(request, Event.LOGIN_DENIED, db.get(User, user.id), "basic", db=db)
                db.flush()  # raised DeadlockDetected before the fix
            connection.commit()
            assert answer.result().status_code == 403
    rows = audit_rows(server, username, "login.denied")
    assert len(rows) == 1 and rows[0][1] == 1, rows  # one row, the second denial counted on it


def test_a_claimed_touch_that_failed_is_tried_again():
    from appserver.security.touches import RecentTouches

    touches = RecentTouches(max_entries=2)
    assert touches.claim(("session", "a", 1))
    assert not touches.claim(("session", "a", 1))  # the same touch: claimed already
    assert touches.claim(("session", "a", 2))  # the next one (a new last_seen_at)
    touches.release(("session", "a", 1))
    assert touches.claim(("session", "a", 1))  # given back: the next request tries
    assert touches.claim(("session", "b", 1))
    assert len(touches) == 2  # bounded: the oldest claims are forgotten


def locked_error() -> sa_exc.OperationalError:
    import sqlite3

    return sa_exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked"))


def busy_once(monkeypatch, module, name: str) -> list[int]:
    """``module.name`` raises "database is locked" on its first call only; the list counts calls."""
    calls = [0]
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 1:
            raise locked_error()
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_a_busy_database_runs_the_request_again(make_app, users, monkeypatch, caplog):
    from appserver.views.rest import api

    calls = busy_once(monkeypatch, api, "user_json")
    testapp = make_app()
    with caplog.at_level(logging.INFO, logger="appserver"):
        response = testapp.get("/rest/api/2/myself", headers=basic_header("fred", "fred-password"))
    assert response.status_code == 200
    assert calls[0] == 2
    assert (
        "transient database error, running /rest/api/2/myself again: "
        "OperationalError: database is locked"
    ) in caplog.text


def test_the_log_names_the_transient_error_by_its_sqlstate():
    import psycopg

    deadlock = sa_exc.OperationalError("UPDATE users", {}, psycopg.errors.DeadlockDetected("deadlock detected"))
    assert transient_kind(deadlock) == "DeadlockDetected (40P01)"
    assert transient_kind(locked_error()) == "OperationalError: database is locked"


def test_busy_on_every_attempt_is_a_503_with_retry_after(make_app, users, monkeypatch):
    from appserver.views.rest import api

    def always_busy(request, user):
        raise locked_error()

    monkeypatch.setattr(api, "user_json", always_busy)
    testapp = make_app(**{"retry.attempts": "2"})
    response = testapp.get("/rest/api/2/myself", headers=basic_header("fred", "fred-password"), status=503)
    assert response.headers["Retry-After"]
    assert response.json["errorMessages"]


def basic_header(username: str, password: str) -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def test_sqlite_connections_use_wal_and_a_busy_timeout(tmp_path):
    from appserver.models import get_engine

    engine = get_engine({"sqlalchemy.url": f"sqlite:///{tmp_path / 'wal.sqlite'}"})
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000
    engine.dispose()
