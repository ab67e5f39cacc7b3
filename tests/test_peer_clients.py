"""Real clients, unmodified, against the app served by waitress on a loopback port: the
``jira`` library (Basic, cookie sessions with re-login, anonymous) and atlassian-python-api.

Every request the clients send is recorded at the transport level (``record_http``), so the
tests can show the 401 a client handled on its own.
"""
from __future__ import annotations

import pytest
import requests
from atlassian import Jira
from jira import JIRA, JIRAError

from appserver.demo import demo_issue_fields
from appserver.security.login import find_user

from .support import create_user, record_http

IDLE_TIMEOUT = 600
SESSION = "/rest/auth/1/session"
ALL_KEYS = [f"DEMO-{n}" for n in range(1, 201)]
PUBLIC_KEYS = ["DEMO-1", "DEMO-41", "DEMO-81", "DEMO-121", "DEMO-161"]


@pytest.fixture(scope="module")
def server(live_server_factory):
    server = live_server_factory(**{
        "appserver.session.idle_timeout": str(IDLE_TIMEOUT),
        "appserver.session.touch_interval": "60",
    })
    with server.request() as request:
        create_user(request, "carol", "carol-password", display_name="Carol Changes")
    return server


@pytest.fixture
def http(monkeypatch):
    return record_http(monkeypatch)


def cookie_client(server, username="fred", password=None) -> JIRA:
    """``JIRA(server, auth=...)``: the jira library's cookie-session mode (it warns that
    cookie auth is deprecated in favour of tokens)."""
    with pytest.warns(DeprecationWarning, match="Cookie based Authentication"):
        return JIRA(server.url, auth=(username, password or f"{username}-password"))


def revoke_sessions(server, username: str) -> int:
    with server.request() as request:
        return request.session_store.revoke_user_sessions(find_user(request, username).id)


def failed_logins(server, username: str) -> int:
    with server.request() as request:
        return find_user(request, username).total_failed_logins


def search_requests(http) -> list:
    return [e for e in http if e.path.startswith("/rest/api/2/search")]


def logins(http) -> list:
    return [e for e in http if e.method == "POST" and e.path == SESSION]


# --- JIRA(basic_auth=...) -------------------------------------------------------------------


def test_jira_basic_auth(server, http):
    jira = JIRA(server.url, basic_auth=("fred", "fred-password"))
    assert jira.myself()["name"] == "fred"
    info = jira.server_info()
    assert info["deploymentType"] == "Server" and all(isinstance(n, int) for n in info["versionNumbers"])

    issues = jira.search_issues("project = DEMO ORDER BY key", maxResults=False)
    assert [issue.key for issue in issues] == ALL_KEYS
    assert issues.total == 200
    assert len(search_requests(http)) == 2  # two pages of 100: the server's cap

    issue = jira.issue("DEMO-7")
    seeded = demo_issue_fields(7)
    assert issue.key == "DEMO-7"
    assert issue.fields.summary == seeded["summary"]
    assert issue.fields.status.name == seeded["status"]
    assert issue.fields.reporter.name == seeded["reporter"]
    assert issue.fields.assignee is None  # unassigned, as Jira says it (no AttributeError)
    assert issue.fields.project.key == "DEMO"
    # The library's own resources, known by their self links, print as their names.
    assert (str(issue.fields.status), str(issue.fields.project), str(issue.fields.issuetype)) == (
        seeded["status"], "DEMO", "Task")
    assert [project.key for project in jira.projects()] == ["DEMO"]
    assert jira.project("DEMO").name == "Demo project"
    assert [status.name for status in jira.statuses()] == ["Open", "In Progress", "Resolved", "Closed"]
    assert [kind.name for kind in jira.issue_types()] == ["Task"]
    assert all(e.status == 200 and e.authorization.startswith("Basic ") for e in http)
    assert not logins(http)  # Basic never needs the session resource


def test_jira_search_with_post_and_field_names(server):
    jira = JIRA(server.url, basic_auth=("fred", "fred-password"))
    issues = jira.search_issues(
        'project = DEMO AND status = "In Progress" ORDER BY key', maxResults=False,
        use_post=True, fields="key,summary,status",  # "key" is translated to issuekey via /field
    )
    expected = [f"DEMO-{n}" for n in range(1, 201) if demo_issue_fields(n)["status"] == "In Progress"]
    assert [issue.key for issue in issues] == expected
    assert all(issue.fields.status.name == "In Progress" for issue in issues)


def test_jira_reports_unsupported_jql_as_a_400(server):
    jira = JIRA(server.url, basic_auth=("fred", "fred-password"))
    with pytest.raises(JIRAError) as raised:
        jira.search_issues("project = DEMO OR project = OTHER")
    assert raised.value.status_code == 400
    assert "'OR' is not supported" in raised.value.text


# --- JIRA(auth=...): cookie sessions and re-login -------------------------------------------


def test_jira_cookie_auth(server, http):
    jira = cookie_client(server)
    # construction: GET session -> 401 -> POST session -> GET session again -> serverInfo
    assert [(e.method, e.path, e.status) for e in http[:4]] == [
        ("GET", SESSION, 401), ("POST", SESSION, 200), ("GET", SESSION, 200),
        ("GET", "/rest/api/2/serverInfo", 200),
    ]
    assert jira.myself()["name"] == "fred"
    assert jira.server_info()["deploymentType"] == "Server"
    assert [i.key for i in jira.search_issues("project = DEMO ORDER BY key", maxResults=False)] == ALL_KEYS
    assert jira.issue("DEMO-7").fields.summary == demo_issue_fields(7)["summary"]
    assert all(e.authorization == "" for e in http)  # cookies only, never Basic
    assert len(logins(http)) == 1


@pytest.mark.parametrize("how", ["revoked by an administrator", "idle timeout"])
def test_jira_cookie_auth_logs_in_again_after_the_session_ends(server, http, how):
    jira = cookie_client(server)
    assert len(jira.search_issues("project = DEMO", maxResults=False)) == 200
    old_cookie = search_requests(http)[-1].cookie
    http.clear()

    if how == "idle timeout":
        server.clock.advance(IDLE_TIMEOUT + 1)
    else:
        assert revoke_sessions(server, "fred") >= 1

    issues = jira.search_issues("project = DEMO ORDER BY key", maxResults=False)
    assert [issue.key for issue in issues] == ALL_KEYS  # 200, not the 5 public ones
    first, login, retried = http[0], http[1], http[2]
    # the proof: the server answered 401 (not 5 anonymous issues) to the stale cookie ...
    assert (first.method, first.status, first.cookie) == ("GET", 401, old_cookie)
    assert first.path.startswith("/rest/api/2/search")
    # ... the client posted its credentials once, and the repeated search succeeded
    assert (login.method, login.path, login.status) == ("POST", SESSION, 200)
    assert (retried.path, retried.status) == (first.path, 200) and retried.cookie != old_cookie
    assert len(logins(http)) == 1


def test_jira_cookie_auth_kill_session_then_continue(server, http):
    jira = cookie_client(server)
    assert jira.kill_session().status_code == 204
    http.clear()
    assert jira.myself()["name"] == "fred"  # 401 -> login -> retry
    assert [e.status for e in http] == [401, 200, 200]


def test_jira_cookie_auth_wrong_password_is_a_clean_401(server, http):
    before = failed_logins(server, "alice")
    with pytest.raises(JIRAError) as raised:
        cookie_client(server, "alice", "not-alices-password")
    assert raised.value.status_code == 401
    assert "Login failed" in raised.value.text
    assert len(logins(http)) == 1  # one attempt: no loop, no recursion
    assert failed_logins(server, "alice") == before + 1


def test_jira_cookie_auth_when_the_password_changed_meanwhile(server, http):
    """The session ends and the stored password no longer works: one re-login attempt, then
    a JIRAError with status 401 — not endless retries."""
    jira = cookie_client(server, "carol")
    with server.request() as request:
        carol = find_user(request, "carol")
        carol.password_hash = request.passwords.hash("a-new-password")
        request.session_store.revoke_user_sessions(carol.id)
    http.clear()
    with pytest.raises(JIRAError) as raised:
        jira.search_issues("project = DEMO")
    assert raised.value.status_code == 401
    assert [(e.method, e.status) for e in http] == [("GET", 401), ("POST", 401)]


# --- anonymous JIRA(server) -----------------------------------------------------------------


def test_jira_anonymous_sees_the_public_issues(server, http):
    jira = JIRA(server.url)
    issues = jira.search_issues("project = DEMO ORDER BY key", maxResults=False)
    assert [issue.key for issue in issues] == PUBLIC_KEYS
    assert jira.issue("DEMO-41").key == "DEMO-41"
    with pytest.raises(JIRAError) as raised:
        jira.issue("DEMO-7")
    assert raised.value.status_code == 404
    assert "does not exist or you do not have permission" in raised.value.text
    with pytest.raises(JIRAError) as raised:
        jira.myself()
    assert raised.value.status_code == 401


# --- atlassian-python-api -------------------------------------------------------------------


def test_atlassian_python_api_basic(server, http):
    jira = Jira(url=server.url, username="fred", password="fred-password")
    assert jira.myself()["name"] == "fred"
    result = jira.jql("project = DEMO ORDER BY key", limit=100)
    assert (result["total"], result["maxResults"]) == (200, 100)
    assert [i["key"] for i in result["issues"]] == ALL_KEYS[:100]
    second = jira.jql("project = DEMO ORDER BY key", start=100, limit=100)
    assert [i["key"] for i in second["issues"]] == ALL_KEYS[100:]
    assert jira.issue("DEMO-7")["fields"]["summary"] == demo_issue_fields(7)["summary"]


def test_atlassian_python_api_keeps_working_with_a_stale_cookie(server, http):
    """It keeps whatever session cookie it collects and sends it along with Basic: once that
    session is gone, Basic must win (no 401, no anonymous answer)."""
    jira = Jira(url=server.url, username="fred", password="fred-password")
    # collect a session cookie into the client's own session, as a login or a proxy would
    jira.session.post(server.url + SESSION, json={"username": "fred", "password": "fred-password"})
    assert jira.jql("project = DEMO", limit=1)["total"] == 200
    assert "appserver.session=" in http[-1].cookie

    revoke_sessions(server, "fred")
    http.clear()
    assert jira.jql("project = DEMO", limit=1)["total"] == 200
    assert jira.myself()["name"] == "fred"
    stale = http[0]
    assert stale.status == 200 and "appserver.session=" in stale.cookie
    assert stale.authorization.startswith("Basic ")
    assert all(e.status == 200 for e in http)
    assert "appserver.session" not in jira.session.cookies  # the server deleted the stale cookie


def test_atlassian_python_api_anonymous_and_wrong_password(server):
    assert Jira(url=server.url).jql("project = DEMO")["total"] == 5
    with pytest.raises(requests.HTTPError) as raised:
        Jira(url=server.url, username="alice", password="wrong").jql("project = DEMO")
    assert raised.value.response.status_code == 401
    assert str(raised.value) != "Unauthorized (401)" and "Basic" in str(raised.value), str(raised.value)


# --- personal access tokens (Authorization: Bearer) -----------------------------------------


def make_token(server, username: str = "fred", name: str = "client") -> str:
    from appserver.security import personal_tokens

    with server.request() as request:
        return personal_tokens.create(request, find_user(request, username), name, 30).raw


def revoke_tokens(server, username: str = "fred") -> int:
    with server.request() as request:
        return request.token_store.revoke_user(find_user(request, username).id)


def test_jira_token_auth(server, http):
    token = make_token(server)
    jira = JIRA(server.url, token_auth=token)
    assert jira.myself()["name"] == "fred"
    issues = jira.search_issues("project = DEMO ORDER BY key", maxResults=False)
    assert [issue.key for issue in issues] == ALL_KEYS  # 200, not the 5 public ones
    assert all(e.status == 200 and e.authorization == f"Bearer {token}" for e in http)
    assert not logins(http) and all(e.cookie == "" for e in http)  # no session, no cookie

    revoke_tokens(server)
    http.clear()
    with pytest.raises(JIRAError) as raised:
        jira.search_issues("project = DEMO ORDER BY key", maxResults=False)
    assert raised.value.status_code == 401  # a clean error, not 5 anonymous issues
    assert "revoked" in raised.value.text
    assert [e.status for e in http] == [401]  # no retry loop


def test_jira_token_auth_with_a_stale_cookie_beside_it(server, http):
    token = make_token(server)
    jira = JIRA(server.url, token_auth=token)
    # a session cookie collected earlier, since revoked: the token must win
    login = jira._session.post(server.url + SESSION, json={"username": "fred", "password": "fred-password"})
    assert login.status_code == 200
    revoke_sessions(server, "fred")
    http.clear()
    assert len(jira.search_issues("project = DEMO", maxResults=False)) == 200
    stale = http[0]  # the first request after the revocation still carries the cookie ...
    assert stale.status == 200 and "appserver.session=" in stale.cookie
    assert stale.authorization == f"Bearer {token}"
    assert all(e.status == 200 for e in http)
    assert "appserver.session" not in jira._session.cookies  # ... which the server deleted


def test_jira_with_a_revoked_token_from_the_start(server):
    token = make_token(server)
    revoke_tokens(server)
    with pytest.raises(JIRAError) as raised:
        JIRA(server.url, token_auth=token).search_issues("project = DEMO")
    assert raised.value.status_code == 401


def test_atlassian_python_api_token(server, http):
    token = make_token(server)
    jira = Jira(url=server.url, token=token)
    assert jira.myself()["name"] == "fred"
    result = jira.jql("project = DEMO ORDER BY key", limit=100)
    assert result["total"] == 200 and [i["key"] for i in result["issues"]] == ALL_KEYS[:100]
    assert all(e.authorization == f"Bearer {token}" for e in http)

    # a stale session cookie beside the token: still 200
    jira.session.post(server.url + SESSION, json={"username": "fred", "password": "fred-password"})
    revoke_sessions(server, "fred")
    http.clear()
    assert jira.jql("project = DEMO", limit=1)["total"] == 200
    assert "appserver.session=" in http[0].cookie and http[0].status == 200

    revoke_tokens(server)
    with pytest.raises(requests.HTTPError) as raised:
        jira.jql("project = DEMO")
    assert raised.value.response.status_code == 401
    assert raised.value.response.headers["WWW-Authenticate"].startswith("Bearer ")
    # The library reads a 401's errorMessages only under Jira's exact Content-Type; under
    # any other it raised a bare "Unauthorized (401)" and the reason was lost.
    assert "revoked" in str(raised.value), str(raised.value)
