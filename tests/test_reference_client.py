"""Our reference client (appserver.client) against a real waitress server, tested like the
peers: it logs in, keeps the cookie, and after a 401 logs in again exactly once."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from appserver import client as client_module
from appserver.client import AppserverClient, AppserverError, AuthenticationError, main
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
        create_user(request, "dave", "dave-password")
    return server


@pytest.fixture(scope="module")
def secure_cookie_server(live_server_factory):
    """Misconfigured for plain http: the session cookie is Secure, so clients never send it."""
    return live_server_factory(**{"appserver.session.secure": "true"})


@pytest.fixture
def http(monkeypatch):
    return record_http(monkeypatch)


def logins(http) -> list:
    return [e for e in http if e.method == "POST" and e.path == SESSION]


def revoke_sessions(server, username: str) -> None:
    with server.request() as request:
        request.session_store.revoke_user_sessions(find_user(request, username).id)


# --- the library ----------------------------------------------------------------------------


def test_anonymous_client_sees_the_public_issues(server, http):
    client = AppserverClient(server.url)
    assert [issue["key"] for issue in client.search("project = DEMO ORDER BY key")] == PUBLIC_KEYS
    assert client.server_info()["deploymentType"] == "Server"
    with pytest.raises(AuthenticationError) as raised:
        client.myself()
    assert raised.value.status == 401
    assert not logins(http)


def test_logged_in_client_pages_through_all_200(server, http):
    client = AppserverClient(server.url, "fred", "fred-password")
    assert [issue["key"] for issue in client.search("project = DEMO ORDER BY key")] == ALL_KEYS
    assert client.myself()["name"] == "fred"
    issue = client.issue("DEMO-7")
    assert issue["fields"]["summary"] == demo_issue_fields(7)["summary"]
    assert len(logins(http)) == 1 and client.relogins == 0
    searches = [e for e in http if e.path.startswith("/rest/api/2/search")]
    assert len(searches) == 2  # pages of 100
    assert all("os_authType=cookie" in e.path and "appserver.session=" in e.cookie for e in searches)


@pytest.mark.parametrize("how", ["revoked", "idle timeout"])
def test_client_logs_in_again_once_after_a_401(server, http, how):
    client = AppserverClient(server.url, "fred", "fred-password")
    assert client.search_page("project = DEMO", max_results=1)["total"] == 200
    http.clear()
    if how == "idle timeout":
        server.clock.advance(IDLE_TIMEOUT + 1)
    else:
        revoke_sessions(server, "fred")

    assert len(list(client.search("project = DEMO"))) == 200
    assert client.relogins == 1
    assert [(e.method, e.status) for e in http[:3]] == [("GET", 401), ("POST", 200), ("GET", 200)]
    assert http[0].path == http[2].path and http[0].cookie != http[2].cookie


def test_wrong_password_fails_once_without_looping(server, http):
    with server.request() as request:
        before = find_user(request, "alice").total_failed_logins
    client = AppserverClient(server.url, "alice", "wrong-password")
    with pytest.raises(AuthenticationError) as raised:
        list(client.search("project = DEMO"))
    assert raised.value.status == 401 and "Login failed" in str(raised.value)
    assert len(http) == 1 and len(logins(http)) == 1
    with server.request() as request:
        assert find_user(request, "alice").total_failed_logins == before + 1


def test_password_changed_while_logged_in_gives_up_after_one_retry(server, http):
    client = AppserverClient(server.url, "dave", "dave-password")
    client.myself()
    with server.request() as request:
        dave = find_user(request, "dave")
        dave.password_hash = request.passwords.hash("changed-password")
        request.session_store.revoke_user_sessions(dave.id)
    http.clear()
    with pytest.raises(AuthenticationError, match="login as 'dave' failed"):
        client.myself()
    assert [(e.method, e.status) for e in http] == [("GET", 401), ("POST", 401)]


def test_a_cookie_that_never_comes_back_is_an_error_not_anonymous_results(secure_cookie_server, http):
    """A Secure cookie over plain http is never sent back. Thanks to os_authType=cookie the
    server says 401 instead of serving the anonymous subset; the client re-logs in once and
    then reports the likely cause."""
    client = AppserverClient(secure_cookie_server.url, "fred", "fred-password")
    with pytest.raises(AuthenticationError, match="Secure"):
        list(client.search("project = DEMO"))
    assert [(e.method, e.status) for e in http] == [
        ("POST", 200), ("GET", 401), ("POST", 200), ("GET", 401)
    ]


def test_server_errors_carry_jiras_messages(server):
    client = AppserverClient(server.url, "fred", "fred-password")
    with pytest.raises(AppserverError) as raised:
        client.search_page("status = Open OR status = Closed")
    assert raised.value.status == 400
    assert "'OR' is not supported" in raised.value.messages[0]
    with pytest.raises(AppserverError) as raised:
        client.issue("DEMO-999")
    assert raised.value.status == 404


def test_logout_ends_the_server_session(server, http):
    client = AppserverClient(server.url, "fred", "fred-password")
    client.myself()
    client.logout()
    assert http[-1].method == "DELETE" and http[-1].status == 204
    http.clear()
    client.myself()  # logs in afresh, no 401 needed
    assert [(e.method, e.status) for e in http] == [("POST", 200), ("GET", 200)]


def test_credentials_come_in_pairs_and_are_not_shown():
    with pytest.raises(ValueError):
        AppserverClient("http://127.0.0.1:1", "fred")
    assert "secret" not in repr(AppserverClient("http://127.0.0.1:1", "fred", "secret"))


# --- the command line -----------------------------------------------------------------------


def run(argv, monkeypatch, password=None, stdin_text=None):
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.delenv("APPSERVER_USER", raising=False)
    if password is None:
        monkeypatch.delenv("APPSERVER_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("APPSERVER_PASSWORD", password)
    if stdin_text is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin_text))
    status = main(argv, stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def test_console_script_is_declared():
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts["appserver-client"] == "appserver.client:main"


def test_cli_search_anonymous(server, monkeypatch):
    status, out, err = run([server.url, "search", "project = DEMO ORDER BY key"], monkeypatch)
    assert status == 0
    assert [line.split()[0] for line in out.splitlines()] == PUBLIC_KEYS
    assert "5 issues" in err


def test_cli_search_logged_in_with_the_password_from_the_environment(server, monkeypatch):
    status, out, err = run(
        ["-u", "fred", server.url, "search", "project = DEMO ORDER BY key"], monkeypatch,
        password="fred-password",
    )
    assert status == 0 and len(out.splitlines()) == 200 and "200 issues" in err
    first = out.splitlines()[0]
    assert first.startswith("DEMO-1 ") and demo_issue_fields(1)["summary"] in first


def test_cli_password_from_standard_input_and_limit(server, monkeypatch):
    status, out, _ = run(
        ["--user", "fred", server.url, "search", "ORDER BY key DESC", "--limit", "3"], monkeypatch,
        stdin_text="fred-password\n",
    )
    assert status == 0
    assert [line.split()[0] for line in out.splitlines()] == ["DEMO-200", "DEMO-199", "DEMO-198"]


def test_cli_issue_and_myself(server, monkeypatch):
    status, out, _ = run(["-u", "fred", server.url, "issue", "DEMO-7"], monkeypatch, "fred-password")
    assert status == 0 and out.startswith("DEMO-7 ") and demo_issue_fields(7)["description"] in out
    status, out, _ = run(["-u", "fred", server.url, "myself"], monkeypatch, "fred-password")
    assert status == 0 and out.startswith("fred (")


@pytest.mark.parametrize(
    "argv, password, code, message",
    [
        (["-u", "alice", "{url}", "search", "project = DEMO"], "nope", 3, "login as 'alice' failed"),
        (["{url}", "myself"], None, 3, "needs you to log in"),
        (["{url}", "search", "status = Open OR status = Closed"], None, 1, "'OR' is not supported"),
        (["{url}", "issue", "DEMO-7"], None, 1, "Issue does not exist"),
        # One reason, not urllib3's repr of every layer (an outside review).
        (["http://127.0.0.1:9", "search"], None, 4, "cannot reach http://127.0.0.1:9: Connection refused\n"),
    ],
)
def test_cli_errors_are_clear_with_a_non_zero_status(server, monkeypatch, argv, password, code, message):
    argv = [arg.replace("{url}", server.url) for arg in argv]
    status, out, err = run(argv, monkeypatch, password)
    assert status == code and out == ""
    assert err.startswith("appserver-client: ") and message in err


def test_cli_empty_password_is_a_usage_error(server, monkeypatch):
    status, _, err = run(["-u", "fred", server.url, "myself"], monkeypatch, stdin_text="\n")
    assert status == 2 and "no password" in err


def test_cli_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["http://127.0.0.1:9"])
    assert raised.value.code == 2
    for url in ("notaurl", "127.0.0.1:6543", "ftp://127.0.0.1/"):  # not "unreachable" (4)
        with pytest.raises(SystemExit) as raised:
            main([url, "myself"])
        assert raised.value.code == 2
        assert "give one like http://127.0.0.1:6543" in capsys.readouterr().err


def test_cli_verbose_reports_relogin(server, monkeypatch):
    """-v logs the 401 → re-login step; provoked here by revoking mid-run."""
    original = AppserverClient.search_page
    revoked = []

    def search_page(self, *args, **kwargs):
        if self.logged_in and not revoked:
            revoke_sessions(server, "fred")
            revoked.append(True)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(client_module.AppserverClient, "search_page", search_page)
    status, out, err = run(["-v", "-u", "fred", server.url, "search", "project = DEMO"], monkeypatch,
                           "fred-password")
    assert status == 0 and len(out.splitlines()) == 200
    assert "401 (session expired or revoked); logging in again" in err
    assert "logged in again 1 time(s)" in err


def test_cli_stops_quietly_when_the_reader_goes_away(server):
    """`appserver-client ... search | head -2`: no BrokenPipeError traceback, exit status 0."""
    command = [str(Path(sys.executable).parent / "appserver-client"), "-u", "fred", server.url, "search"]
    environment = {**os.environ, "APPSERVER_PASSWORD": "fred-password"}
    # 200 lines are more than the pipe's buffer: writing goes on after the reader has gone.
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()  # what `head -1` does after its line
        errors = process.stderr.read().decode()
        status = process.wait(timeout=30)
    assert first.startswith(b"DEMO-1 ")
    assert status == 0 and "Traceback" not in errors and "BrokenPipe" not in errors, errors


# --- personal access tokens: the library, the command line, curl ----------------------------


def make_token(server, username: str = "fred") -> str:
    from appserver.security import personal_tokens

    with server.request() as request:
        return personal_tokens.create(request, find_user(request, username), "client", 30).raw


def revoke_tokens(server, username: str = "fred") -> None:
    with server.request() as request:
        request.token_store.revoke_user(find_user(request, username).id)


def test_token_client_pages_through_all_200_without_a_session(server, http):
    token = make_token(server)
    client = AppserverClient(server.url, token=token)
    assert [issue["key"] for issue in client.search("project = DEMO ORDER BY key")] == ALL_KEYS
    assert client.myself()["name"] == "fred"
    assert not logins(http) and all(e.cookie == "" and e.authorization == f"Bearer {token}" for e in http)
    assert token not in repr(client)

    revoke_tokens(server)
    http.clear()
    with pytest.raises(AuthenticationError) as raised:
        list(client.search("project = DEMO"))
    assert raised.value.status == 401 and "revoked" in str(raised.value)
    assert [e.status for e in http] == [401]  # no re-login attempt, no loop


def test_token_client_refuses_a_password_too():
    with pytest.raises(ValueError):
        AppserverClient("http://127.0.0.1:9", "fred", "fred-password", token="apt_1_x")


def run_with_token(argv, monkeypatch, token=None, stdin_text=None):
    if token is None:
        monkeypatch.delenv("APPSERVER_TOKEN", raising=False)
    else:
        monkeypatch.setenv("APPSERVER_TOKEN", token)
    return run(argv, monkeypatch, stdin_text=stdin_text)


def test_cli_token_from_the_environment_and_from_standard_input(server, monkeypatch):
    token = make_token(server)
    status, out, err = run_with_token(["--token", server.url, "search", "project = DEMO"], monkeypatch, token)
    assert status == 0 and len(out.splitlines()) == 200 and "200 issues" in err
    status, out, _ = run_with_token(["--token", server.url, "myself"], monkeypatch, stdin_text=token + "\n")
    assert status == 0 and out.startswith("fred (")


def test_cli_revoked_token_is_a_clean_authentication_error(server, monkeypatch):
    token = make_token(server)
    revoke_tokens(server)
    status, out, err = run_with_token(["--token", server.url, "search", "project = DEMO"], monkeypatch, token)
    assert status == 3 and out == ""
    assert err.startswith("appserver-client: the personal access token was refused") and "revoked" in err


def test_cli_token_usage_errors(server, monkeypatch):
    status, _, err = run_with_token(["--token", server.url, "myself"], monkeypatch, stdin_text="\n")
    assert status == 2 and "no token" in err
    status, _, err = run_with_token(["--token", "-u", "fred", server.url, "myself"], monkeypatch, "apt_1_x")
    assert status == 2 and "not both" in err


def curl(*args: str) -> tuple[int, dict[str, str], str]:
    """curl as the docs show it: status, headers (lower-case names), body."""
    result = subprocess.run(
        ["curl", "-sS", "-D", "-", *args], capture_output=True, text=True, timeout=30, check=True
    )
    head, _, body = result.stdout.partition("\n\n")  # text mode: CRLF is read as LF
    lines = head.split("\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def test_curl_with_a_token(server):
    """The docs' curl examples: create a token with Basic, use it, revoke it."""
    import json

    status, _, body = curl(
        "-u", "fred:fred-password", "-H", "Content-Type: application/json",
        "-d", '{"name": "curl", "expirationDuration": 30}', server.url + "/rest/pat/latest/tokens",
    )
    assert status == 201, body
    created = json.loads(body)
    bearer = f"Authorization: Bearer {created['rawToken']}"
    status, headers, body = curl("-H", bearer, server.url + "/rest/api/2/search?jql=project%3DDEMO&maxResults=1")
    assert status == 200 and json.loads(body)["total"] == 200 and "set-cookie" not in headers
    status, _, body = curl(
        "-H", bearer, "-b", "appserver.session=" + "A" * 43, server.url + "/rest/api/2/search?jql=project%3DDEMO"
    )
    assert status == 200 and json.loads(body)["total"] == 200  # a stale cookie beside it
    status, _, _ = curl("-X", "DELETE", "-H", bearer, f"{server.url}/rest/pat/latest/tokens/{created['id']}")
    assert status == 204
    status, headers, body = curl("-H", bearer, server.url + "/rest/api/2/search?jql=project%3DDEMO")
    assert status == 401 and headers["www-authenticate"].startswith('Bearer realm="appserver", error="invalid_token"')
    assert headers["x-seraph-loginreason"] == "AUTHENTICATED_FAILED"
    assert "revoked" in json.loads(body)["errorMessages"][0]
