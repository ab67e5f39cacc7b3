"""Production as users run it (issue 13), through ``make cluster``'s nginx over https with the
CA it generated (fixtures: tests/deployment_fixtures.py; the browser test is
tests/e2e/test_https_cluster.py): TLS and redirects, the forwarded headers production.ini
trusts, one session on every process (``X-Appserver-Process`` says which answered), the
``jira`` client with the CA bundle, a process killed mid-run, a rolling restart under load,
PostgreSQL restarted.
"""
from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
import requests

from .deployment_fixtures import (
    BIN, PROCESS, deploy, login, nginx_or_skip, postgresql_or_skip, process_names, restore_processes,
    start_cluster, stop_cluster, trusting,
)
from .support import ROOT, record_http

SEARCH = "/rest/api/2/search?jql=project%3DDEMO&maxResults=5"


@pytest.fixture(autouse=True)
def every_process_running(request: pytest.FixtureRequest) -> None:
    """Each test that uses the shared cluster starts with all of its processes up."""
    if "cluster" in request.fixturenames:
        restored = restore_processes(request.getfixturevalue("cluster"))
        if restored:
            logging.getLogger(__name__).warning("an earlier test left port(s) %s stopped: started again", restored)


@pytest.fixture
def https(cluster) -> requests.Session:
    return trusting(cluster.ca_file)


# --- TLS, redirects, the proxy's headers -----------------------------------------------------


def test_https_with_the_generated_ca_and_http_redirects(cluster, https):
    status = https.get(cluster.url + "/status", timeout=10)
    assert status.status_code == 200 and status.json() == {"state": "RUNNING"}
    assert status.headers["Strict-Transport-Security"] == "max-age=31536000"
    with pytest.raises(requests.exceptions.SSLError):  # no other trust anchor would do
        requests.get(cluster.url + "/status", timeout=10, verify=True)
    plain = https.get(f"http://127.0.0.1:{cluster.http_port}/issues?x=1", allow_redirects=False, timeout=10)
    assert plain.status_code == 301
    assert plain.headers["Location"] == f"{cluster.url}/issues?x=1"
    # Plain http to the https port: the same redirect, not nginx's 400 page.
    wrong_port = https.get(f"http://127.0.0.1:{cluster.https_port}/issues?x=1", allow_redirects=False, timeout=10)
    assert wrong_port.status_code == 301, wrong_port.text[:200]
    assert wrong_port.headers["Location"] == f"{cluster.url}/issues?x=1"


def test_redirects_name_the_site_never_the_clients_host(cluster, https):
    """Host: evil.example on the http port (and plain http to the https port) is sent to the
    site's own name, not to https://evil.example/: no open redirect through the proxy."""
    for port in (cluster.http_port, cluster.https_port):
        evil = https.get(f"http://127.0.0.1:{port}/issues?x=1", headers={"Host": "evil.example"},
                         allow_redirects=False, timeout=10)
        assert evil.status_code == 301, (port, evil.status_code, evil.text[:200])
        assert evil.headers["Location"] == f"{cluster.url}/issues?x=1", port


def tls_1_2_handshake(cluster, cipher: str) -> str:
    """The suite nginx agrees to with a TLS 1.2 client that offers ``cipher`` alone."""
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(cipher + ":@SECLEVEL=0")  # the client would offer it; the server decides
    with socket.create_connection((cluster.host, cluster.https_port), timeout=10) as plain, \
            context.wrap_socket(plain, server_hostname=cluster.host) as sock:
        return sock.cipher()[0]


def test_tls_1_2_takes_only_forward_secret_aead_suites(cluster):
    """Mozilla's "intermediate": ECDHE with AES-GCM or ChaCha20-Poly1305. A client offering
    only CBC suites (SHA-1 or SHA-384 MACs) is refused. (The cluster's certificate is ECDSA:
    static-RSA suites could not be chosen with it anyway; the site's list has none.)"""
    for good in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"):
        assert tls_1_2_handshake(cluster, good) == good
    for weak in ("ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-ECDSA-AES128-SHA256"):
        with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE|handshake failure"):
            tls_1_2_handshake(cluster, weak)


def test_nothing_is_compressed_over_tls(cluster, https):
    """BREACH: a page holding a CSRF token, compressed over TLS, leaks the token to whoever can
    put text into the page and watch the lengths. The cluster's nginx.conf has Debian's
    stock "gzip on"; the site turns it off."""
    page = https.get(cluster.url + "/login", headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert page.status_code == 200 and 'name="csrf_token"' in page.text
    assert "Content-Encoding" not in page.headers, page.headers
    login(https, cluster)
    account = https.get(cluster.url + "/account", headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert account.status_code == 200 and 'name="csrf_token"' in account.text
    assert "Content-Encoding" not in account.headers, account.headers


def test_status_takes_no_forwarded_header_from_the_client(cluster, https):
    """nginx overwrites X-Forwarded-* on /status too: a client's X-Forwarded-Proto: gopher was
    waitress's plain-text 400 (and a warning in its log)."""
    spoofed = {"X-Forwarded-Proto": "gopher", "X-Forwarded-Host": "evil.example",
               "X-Forwarded-Port": "x", "X-Forwarded-For": "not an address", "Forwarded": "for=x;proto=gopher"}
    for _ in range(2 * len(cluster.ports)):  # every process, whichever nginx picks
        status = https.get(cluster.url + "/status", headers=spoofed, timeout=10)
        assert status.status_code == 200 and status.json() == {"state": "RUNNING"}, status.text[:200]


#: The access log's upstream fields (deploy/nginx/appserver.conf, log_format appserver).
UPSTREAM_FIELDS = re.compile(r" upstream=(?P<addr>\S+) upstream_status=(?P<status>\S+) "
                             r"request_time=(?P<time>\d+\.\d{3}) upstream_time=(?P<upstream_time>\d+\.\d{3})$")


def test_the_access_log_says_which_process_answered_and_no_credential(cluster, https):
    marker = secrets.token_hex(8)
    basic = base64.b64encode(f"nobody-{marker}:password-{marker}".encode()).decode()
    response = https.get(f"{cluster.url}/rest/api/2/myself?m={marker}", timeout=10,
                         headers={"Authorization": f"Basic {basic}"},
                         cookies={"__Host-appserver.session": f"cookie-{marker}"})
    assert response.status_code == 401
    log = (cluster.nginx_dir / "access.log").read_text()
    (line,) = [line for line in log.splitlines() if f"?m={marker} " in line]
    fields = UPSTREAM_FIELDS.search(line)
    assert fields, line
    assert fields["addr"] in {f"127.0.0.1:{port}" for port in cluster.ports} and fields["status"] == "401", line
    assert f"nobody-{marker}" not in log and f"password-{marker}" not in log and basic not in log
    assert f"cookie-{marker}" not in log


def test_the_cluster_keeps_its_logs_and_state_to_itself(cluster, https):
    """cluster.json holds the database URL (a password, if it has one); the logs hold what
    requests did. Neither is for other users of the machine."""
    https.get(cluster.url + "/status", timeout=10)  # nginx has written its logs
    files = [cluster.state_file, cluster.nginx_dir / "access.log", cluster.nginx_dir / "error.log",
             *(cluster.log_file(port) for port in cluster.ports)]
    modes = {path.name: oct(path.stat().st_mode & 0o777) for path in files}
    assert set(modes.values()) == {oct(0o600)}, modes


def test_waitress_sees_https_the_real_host_and_the_body_limit(cluster, https):
    """The forwarded headers production.ini trusts: Secure __Host- cookies, https links with
    nginx's host and port; nginx refuses what waitress would (bodies over 1 MiB)."""
    response = login(https, cluster)
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-appserver.session=") and "secure" in cookie.lower()
    stranger = trusting(cluster.ca_file)
    stale = stranger.get(cluster.url + "/rest/api/2/myself", cookies={"__Host-appserver.session": "x" * 43}, timeout=10)
    assert stale.status_code == 401
    assert f'login-url="{cluster.url}/rest/auth/1/session"' in stale.headers["WWW-Authenticate"]
    # A client's own X-Forwarded-Proto/Host cannot fool waitress: nginx overwrites them.
    spoofed = stranger.get(cluster.url + "/rest/api/2/myself", timeout=10,
                        cookies={"__Host-appserver.session": "x" * 43},
                        headers={"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"})
    assert f'login-url="{cluster.url}/' in spoofed.headers["WWW-Authenticate"]
    too_big = https.post(cluster.url + "/rest/auth/1/session", data=b"x" * (1024 * 1024 + 1),
                         headers={"Content-Type": "application/json"}, timeout=10)
    assert too_big.status_code == 413
    assert "1048576 bytes" in too_big.json()["errorMessages"][0]  # nginx's refusal, as Jira's JSON


def assert_jira_json(response: requests.Response, status: int, text: str) -> None:
    assert response.status_code == status, (response.status_code, response.text[:200])
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["errors"] == {} and text in body["errorMessages"][0], body


def assert_error_page(response: requests.Response, status: int, text: str) -> None:
    assert response.status_code == status, (response.status_code, response.text[:200])
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert response.text.startswith("<!DOCTYPE html>") and f"({status})" in response.text
    assert text in response.text


def test_what_nginx_refuses_itself_is_jira_json_under_rest_and_a_page_elsewhere(cluster, https):
    """nginx answers some requests without a process: a body over 1 MiB, headers over its
    buffers. Under /rest those answers are JSON in Jira's shape, as every REST error is."""
    body = b"x" * (1024 * 1024 + 1)
    assert_jira_json(https.post(cluster.url + "/rest/api/2/search", data=body, timeout=10),
                     413, "larger than this server accepts")
    assert_error_page(https.post(cluster.url + "/login", data=body, timeout=10),
                      413, "larger than this server accepts")
    cookie = {"Cookie": "a=" + "b" * 20000}  # one header over nginx's 8 KiB buffers
    assert_jira_json(https.get(cluster.url + "/rest/api/2/myself", headers=cookie, timeout=10),
                     431, "headers are larger")
    assert_error_page(https.get(cluster.url + "/issues", headers=cookie, timeout=10), 431, "clear this site")
    assert https.get(cluster.url + "/_errors/json/413", timeout=10).status_code == 404  # internal only
    # Requests no client library sends: Host twice, a header without its colon, no Host.
    for head in ("Host: 127.0.0.1\r\nHost: evil.example", "Host: 127.0.0.1\r\nX-Broken header", ""):
        assert_raw_error(cluster, f"GET /rest/api/2/myself HTTP/1.1\r\n{head}\r\n\r\n", "json")
        assert_raw_error(cluster, f"GET /issues HTTP/1.1\r\n{head}\r\n\r\n", "html")


def assert_raw_error(cluster, request: str, shape: str) -> None:
    """``request`` sent as it is over TLS is nginx's 400, in the shape its path asks for."""
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    with socket.create_connection((cluster.host, cluster.https_port), timeout=10) as plain, \
            context.wrap_socket(plain, server_hostname=cluster.host) as sock:
        sock.sendall(request.encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read().decode()
    assert response.status == 400, (request, response.status, body[:200])
    assert response.getheader("Strict-Transport-Security") == "max-age=31536000"
    message = "The request is malformed (a header is broken, repeated or missing, such as Host)"
    if shape == "json":
        assert response.getheader("Content-Type") == "application/json;charset=UTF-8", request
        assert json.loads(body) == {"errorMessages": [message + "; send a well-formed HTTP request."], "errors": {}}
    else:
        assert response.getheader("Content-Type") == "text/html; charset=utf-8", request
        assert body.startswith("<!DOCTYPE html>") and "(400)" in body and message in body


def test_no_process_answering_is_a_retry_after_not_nginx_html(cluster, https):
    """Every process down at once (a bad deploy, a restart of all): nginx's 502 says when to
    try again, in the shape the client reads."""
    for port in cluster.ports:
        cluster.stop_process(port)
    try:
        down = https.get(cluster.url + "/rest/api/2/myself", timeout=10)
        assert_jira_json(down, 502, "try again in a few seconds")
        assert down.headers["Retry-After"] == "5"
        page = https.get(cluster.url + "/issues", timeout=10)
        assert_error_page(page, 502, "try again in a few seconds")
        assert page.headers["Retry-After"] == "5"
        status = https.get(cluster.url + "/status", timeout=10)  # a JSON endpoint: JSON
        assert_jira_json(status, 502, "try again in a few seconds")
        assert status.headers["Retry-After"] == "5"
    finally:
        restore_processes(cluster)


# --- one session, every process ----------------------------------------------------------------


def test_a_session_made_on_one_process_is_honoured_by_the_other(cluster, https):
    names = process_names(cluster)
    assert len(names) == 2
    made_on = login(https, cluster).headers[PROCESS]
    assert made_on in names
    answered: Counter[str] = Counter()
    for _ in range(8):
        response = https.get(cluster.url + "/rest/api/2/myself", timeout=10)
        assert response.status_code == 200 and response.json()["name"] == "fred"
        answered[response.headers[PROCESS]] += 1
    assert set(answered) == set(names), answered  # both processes served the one session

    # A form rendered by one process is accepted by the other: one secret, one CSRF key.
    for _ in range(6):
        page = https.get(cluster.url + "/account", timeout=10)
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        logout = https.post(cluster.url + "/logout", data={"csrf_token": token}, allow_redirects=False,
                            headers={"Origin": cluster.url}, timeout=10)  # https forms need their origin
        if logout.headers[PROCESS] != page.headers[PROCESS]:
            break
        login(https, cluster)  # the same process again (other traffic): log in, try again
    assert logout.status_code == 303 and logout.headers[PROCESS] != page.headers[PROCESS]
    assert https.get(cluster.url + "/rest/api/2/myself", timeout=10).status_code == 401


# --- the jira client -----------------------------------------------------------------------------


def test_the_jira_client_with_the_ca_bundle_searches_and_logs_in_again(cluster, monkeypatch):
    from jira import JIRA

    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # they would override verify
        monkeypatch.delenv(variable, raising=False)
    http = record_http(monkeypatch)
    with pytest.warns(DeprecationWarning, match="Cookie based Authentication"):
        jira = JIRA(cluster.url, auth=("fred", "fred-password"), options={"verify": str(cluster.ca_file)})
    assert len(jira.search_issues("project = DEMO ORDER BY key", maxResults=False)) == 200
    revoke = subprocess.run([str(BIN / "appserver"), str(ROOT / "production.ini"), "revoke-sessions", "fred"],
                            env=cluster.environment(cluster.ports[0]), capture_output=True, text=True, timeout=60)
    assert revoke.returncode == 0, revoke.stderr
    http.clear()
    assert len(jira.search_issues("project = DEMO ORDER BY key", maxResults=False)) == 200
    statuses = [(e.method, e.path.split("?")[0], e.status) for e in http]
    assert statuses[:3] == [("GET", "/rest/api/2/search", 401), ("POST", "/rest/auth/1/session", 200),
                            ("GET", "/rest/api/2/search", 200)], statuses




# --- a process killed, a rolling restart: load through nginx --------------------------------


@dataclass
class Load:
    """Clients sending safe requests (GET) to nginx from threads until stopped, each logged
    in once as its own user (concurrent logins of one account would meet the lock-out's
    reservation of a failure per attempt in flight); every answer is recorded."""

    cluster: object
    paths: list[str]
    users: tuple[str, ...] = ("fred", "alice", "admin")
    answers: list[tuple[str, str, int | str, str, str]] = field(default_factory=list)
    done: threading.Condition = field(default_factory=threading.Condition)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> "Load":
        self.threads = [threading.Thread(target=self.client, args=(user,), daemon=True) for user in self.users]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def client(self, user: str) -> None:
        http = trusting(self.cluster.ca_file)
        login(http, self.cluster, user)
        while not self.stopping.is_set():
            for path in self.paths:
                try:
                    response = http.get(self.cluster.url + path, timeout=60)
                    answer = (user, path, response.status_code, response.headers.get("X-AUSERNAME", ""),
                              response.headers.get(PROCESS, ""))
                except requests.RequestException as error:
                    answer = (user, path, type(error).__name__, "", "")
                with self.done:
                    self.answers.append(answer)
                    self.done.notify_all()

    def wait_for(self, more: int) -> None:
        """Until ``more`` further answers have come in (the load is really running)."""
        with self.done:
            target = len(self.answers) + more
            assert self.done.wait_for(lambda: len(self.answers) >= target, timeout=120), "the load stalled"

    def failures(self) -> list:
        """Anything but a 200 for the client's own user (/status names nobody: it reads no
        credential)."""
        return [a for a in self.answers if a[2] != 200 or (a[1] != "/status" and a[3] != a[0])]


def test_killing_one_process_loses_no_session_and_no_safe_request(cluster):
    """SIGKILL, not a graceful stop: whatever that process was doing is gone. nginx sends each
    GET it had in flight to the other process, and new requests go there too; the sessions
    live in PostgreSQL, so every client stays logged in."""
    victim_port = cluster.ports[1]
    victim = deploy.live_pid(cluster.pid_file(victim_port), "pserve")
    survivor_name = next(name for name, port in process_names(cluster).items() if port != victim_port)
    with Load(cluster, [SEARCH, "/issues", "/rest/api/2/myself", "/status"]) as load:
        load.wait_for(15)
        killed_at = len(load.answers)
        os.kill(victim, signal.SIGKILL)
        load.wait_for(30)
    assert load.failures() == [], load.failures()[:5]
    after = {a[4] for a in load.answers[killed_at + len(load.users):]}
    assert after == {survivor_name}, after
    # A POST too is retried when the dead process refused its connection (nothing was sent).
    assert login(trusting(cluster.ca_file), cluster).headers[PROCESS] == survivor_name
    cluster.start_process(victim_port)
    deploy.wait_for_status(f"http://127.0.0.1:{victim_port}/status", cluster.log_file(victim_port))


#: The load suite of the concurrency issue (tests/load, Locust), sized for this test: every
#: kind of user, long enough that the whole rolling restart happens inside the run.
ROLLING_LOAD_SECONDS = 20


def test_a_rolling_restart_under_load_fails_no_request(cluster, tmp_path, monkeypatch):
    """deploy/cluster.py restart (make cluster-restart) while tests/load's users (browsers,
    jira-style REST clients, Basic clients, an attacker, an administrator) work through nginx:
    each process gets SIGTERM, finishes what it has and comes back before the next goes. The
    suite's verdict, with no fault declared, allows no 5xx and no unanswered request, and
    checks every acknowledged write again afterwards."""
    from .load.plan import Plan, Profile
    from .load.run import after_the_run, run_locust, seed_accounts
    from .load.verdict import judge

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cluster.ca_file))  # after_the_run's requests trust the CA
    profile = Profile("rolling-restart", seconds={"cluster": ROLLING_LOAD_SECONDS},
                      users={"Browser": 2, "RestClient": 2, "BasicClient": 1, "Attacker": 1, "Administrator": 1},
                      victims=4, burst=4, outage_seconds=0)
    plan = Plan.build("cluster", profile, [cluster.url], True, tmp_path / "journal.json")
    plan.ca_file = str(cluster.ca_file)  # the Locust users trust the cluster's CA
    seed_accounts(cluster.database_url, plan)
    plan.save(tmp_path / "plan.json")
    before = process_names(cluster)
    locust = run_locust(tmp_path / "plan.json", plan, ROLLING_LOAD_SECONDS, tmp_path)
    try:
        deploy.wait_for_status(cluster.url + "/status", tmp_path / "locust.log", ca_file=cluster.ca_file)
        time.sleep(2)  # let every kind of user get going before the first process goes
        restart = subprocess.run([str(BIN / "python"), str(deploy.__file__), "restart", "--run-dir",
                                  str(cluster.run_dir)], capture_output=True, text=True, timeout=120)
        assert restart.returncode == 0, restart.stdout + restart.stderr
        assert locust.poll() is None, "the load ended before the rolling restart did: raise ROLLING_LOAD_SECONDS"
        locust.wait(timeout=ROLLING_LOAD_SECONDS + 120)
    finally:
        if locust.poll() is None:
            locust.kill()
            locust.wait()
    after = process_names(cluster)
    assert not set(before) & set(after), "every process was replaced"

    journal = json.loads((tmp_path / "journal.json").read_text())
    verdict = judge(journal, [], after_the_run(plan, journal, cluster.url, cluster.database_url))
    assert not verdict.violated, ({k: v for k, v in verdict.counts.items() if v}, verdict.examples)
    answered = sum(sum(counts.values()) for counts in journal["statuses"].values())
    assert answered > 100, journal["statuses"]


# --- PostgreSQL restarted ---------------------------------------------------------------------


@pytest.fixture(params=["postgresql"])
def private_postgresql():
    """A throwaway PostgreSQL cluster (tests/pgserver.py): never the machine's shared server."""
    from .pgserver import PostgresServer, PostgresUnavailable

    postgresql_or_skip()  # the suite's PostgreSQL run is where this belongs
    try:
        server = PostgresServer()
    except PostgresUnavailable as error:
        pytest.skip(str(error))
    with server:
        yield server


def test_postgresql_restarted_means_503_then_recovery_by_itself(private_postgresql, tmp_path):
    nginx_or_skip()
    cluster = start_cluster(tmp_path / "cluster", private_postgresql.url("appserver_cluster"))
    try:
        http = trusting(cluster.ca_file)
        login(http, cluster)
        assert http.get(cluster.url + "/issues", timeout=10).headers["X-AUSERNAME"] == "fred"

        private_postgresql.stop()
        for _ in range(2 * len(cluster.ports)):  # every process, whichever nginx picks
            status = http.get(cluster.url + "/status", timeout=30)
            assert status.status_code == 503 and status.json() == {"state": "ERROR"}
            page = http.get(cluster.url + "/issues", timeout=30)
            assert page.status_code == 503 and "Try again" in page.text
            rest = http.get(cluster.url + "/rest/api/2/myself", timeout=30)
            assert rest.status_code == 503 and "database is unavailable" in rest.json()["errorMessages"][0]

        private_postgresql.start()  # nobody touches the processes or nginx
        healthy: set[str] = set()
        deadline = time.monotonic() + 60
        while healthy != set(process_names(cluster)):
            assert time.monotonic() < deadline, f"only {healthy} recovered"
            status = http.get(cluster.url + "/status", timeout=30)
            if status.status_code == 200:
                healthy.add(status.headers[PROCESS])
            else:
                time.sleep(0.2)  # PostgreSQL is still starting
        for _ in range(len(cluster.ports)):  # the same cookie, on every process
            me = http.get(cluster.url + "/rest/api/2/myself", timeout=30)
            assert me.status_code == 200 and me.json()["name"] == "fred"
    finally:
        stop_cluster(cluster)
