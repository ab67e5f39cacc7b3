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
import stat
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
import requests

from .deployment_fixtures import (
    BIN, PROCESS, deploy, free_port, login, nginx_or_skip, postgresql_or_skip, process_names, restore_processes,
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
            logging.getLogger(__name__).warning("an earlier test left process(es) %s stopped: started again", restored)


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


def test_plain_http_under_rest_is_told_to_use_https_not_redirected(cluster, https):
    """A client follows a redirect without its Authorization header (and a POST as a GET):
    its answers would then be anonymous, the 5 public issues (an outside review)."""
    for path in ("/rest/api/2/search", "/rest", "/rest/auth/1/session"):
        told = https.post(f"http://127.0.0.1:{cluster.http_port}{path}", json={}, allow_redirects=False, timeout=10)
        assert told.status_code == 403 and told.headers["Content-Type"] == "application/json;charset=UTF-8"
        assert set(told.json()) == {"errorMessages", "errors"}
        assert f"the same path on https://127.0.0.1:{cluster.https_port}/ " in told.json()["errorMessages"][0]
    # A raw path with a quote cannot break out of the JSON (nginx does not escape it).
    with socket.create_connection((cluster.host, cluster.http_port), timeout=10) as raw:
        raw.sendall(b'GET /rest/x"},"injected":1,"y":{"z":"\\ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
        answer = b"".join(iter(lambda: raw.recv(65536), b""))
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert set(body) == {"errorMessages", "errors"}
    page = https.get(f"http://127.0.0.1:{cluster.http_port}/restful", allow_redirects=False, timeout=10)
    assert page.status_code == 301  # not the REST prefix


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
    for _ in range(2 * len(cluster.instances)):  # every process, whichever nginx picks
        status = https.get(cluster.url + "/status", headers=spoofed, timeout=10)
        assert status.status_code == 200 and status.json() == {"state": "RUNNING"}, status.text[:200]


#: The access log's upstream fields (deploy/nginx/appserver.conf, log_format appserver).
UPSTREAM_FIELDS = re.compile(r" upstream=(?P<addr>\S+) upstream_status=(?P<status>\S+) "
                             r"request_time=(?P<time>\d+\.\d{3}) upstream_time=(?P<upstream_time>\d+\.\d{3})$")


def access_log_once_written(cluster, marker: str) -> str:
    """The access log once it holds a line of the request marked ``?m=marker``: nginx writes
    that line in its log phase, after the response has gone out, so a client that reads the
    file at once can be ahead of it (seen in two workers). Waits at most 10 s."""
    deadline = time.monotonic() + 10
    while True:
        log = (cluster.nginx_dir / "access.log").read_text()
        if f"?m={marker} " in log or time.monotonic() > deadline:
            return log
        time.sleep(0.05)  # waiting for nginx to write, not for time to pass


def test_the_access_log_says_which_process_answered_and_no_credential(cluster, https):
    marker = secrets.token_hex(8)
    basic = base64.b64encode(f"nobody-{marker}:password-{marker}".encode()).decode()
    response = https.get(f"{cluster.url}/rest/api/2/myself?m={marker}", timeout=10,
                         headers={"Authorization": f"Basic {basic}"},
                         cookies={"__Host-appserver.session": f"cookie-{marker}"})
    assert response.status_code == 401
    log = access_log_once_written(cluster, marker)
    (line,) = [line for line in log.splitlines() if f"?m={marker} " in line]
    fields = UPSTREAM_FIELDS.search(line)
    assert fields, line
    assert fields["addr"] in {f"unix:{cluster.socket_path(n)}" for n in cluster.instances}, line
    assert fields["status"] == "401", line
    assert f"nobody-{marker}" not in log and f"password-{marker}" not in log and basic not in log
    assert f"cookie-{marker}" not in log


def test_the_cluster_keeps_its_logs_and_state_to_itself(cluster, https):
    """cluster.json holds the database URL (a password, if it has one); the logs hold what
    requests did. Neither is for other users of the machine."""
    https.get(cluster.url + "/status", timeout=10)  # nginx has written its logs
    files = [cluster.state_file, cluster.nginx_dir / "access.log", cluster.nginx_dir / "error.log",
             *(cluster.log_file(n) for n in cluster.instances)]
    modes = {path.name: oct(path.stat().st_mode & 0o777) for path in files}
    assert set(modes.values()) == {oct(0o600)}, modes


def tcp_listening_inodes() -> set[str]:
    """The inodes of every listening TCP socket of this machine (/proc/net/tcp, tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[3] == "0A":  # TCP_LISTEN
                    found.add(fields[9])
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def last_session_address(cluster) -> str:
    from sqlalchemy import text

    from appserver.models import get_engine

    engine = get_engine({"sqlalchemy.url": cluster.database_url})
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT remote_addr FROM sessions ORDER BY id DESC LIMIT 1")).scalar()
    finally:
        engine.dispose()


def test_only_nginx_reaches_a_process_so_nobody_forges_the_client_address(cluster, https):
    """production.ini trusts X-Forwarded-* from whoever connects to a process. On a loopback
    port that was every local user: X-Forwarded-For: anything was then the address in the
    audit trail and the session list. Each process listens on a Unix socket alone, which
    only this user (nginx's workers; as root, their user nobody) may open."""
    listening = tcp_listening_inodes()
    for instance in cluster.instances:
        pid = deploy.live_pid(cluster.pid_file(instance), "pserve")
        assert socket_inodes(pid) and not socket_inodes(pid) & listening, f"process {instance} listens on TCP"
        mode = cluster.socket_path(instance).stat().st_mode
        assert stat.S_ISSOCK(mode) and not mode & 0o007, oct(mode)  # nobody else may connect
    assert not cluster.socket_dir.stat().st_mode & 0o007, oct(cluster.socket_dir.stat().st_mode)  # 700 (root: 2750)
    if os.geteuid() == 0 and os.path.exists("/usr/bin/python3"):
        # Another user of the machine, neither root nor nginx's workers (nobody); Debian's
        # python, which every user may run (not a virtualenv or pyenv under /root).
        probe = subprocess.run(["/usr/bin/python3", "-c", "import socket, sys; "
                                "socket.socket(socket.AF_UNIX).connect(sys.argv[1])",
                                str(cluster.socket_path(cluster.instances[0]))],
                               user="daemon", group="daemon", capture_output=True, text=True, timeout=30)
        assert probe.returncode == 1 and "PermissionError" in probe.stderr, probe.stderr
    # Through nginx the address is nginx's view of the client, whatever the client claims.
    forged = trusting(cluster.ca_file)
    forged.headers["X-Forwarded-For"] = "203.0.113.7"
    login(forged, cluster, "alice")
    assert last_session_address(cluster) == "127.0.0.1"


def test_the_processes_log_no_pkg_resources_warning(cluster, https):
    """pyramid imports pkg_resources, which warned at every start; `make run` filtered it, the
    cluster (like the systemd unit) did not."""
    for instance in cluster.instances:
        log = cluster.log_file(instance).read_text()
        assert "pkg_resources is deprecated" not in log, log[-500:]


def test_one_process_without_its_database_fails_no_safe_request(cluster, https):
    """One process whose database is unreachable answers 503 to everything; nginx sends a GET
    or HEAD that meets it on to the healthy process. A POST is not retried: the process might
    have run it."""
    broken = cluster.instances[1]
    closed = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"  # nothing listens there
    cluster.stop_process(broken)
    cluster.start_process(broken, database_url=closed)
    try:
        deadline = time.monotonic() + 60
        while True:  # until the broken process answers, with its 503
            try:
                if deploy.get_json("http://localhost/status", cluster.socket_path(broken), None)[0] == 503:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, cluster.log_file(broken).read_text()[-500:]
            time.sleep(0.2)
        marker = secrets.token_hex(6)
        posts = []
        for _ in range(6):
            posts.append(https.post(f"{cluster.url}/rest/auth/1/session?m={marker}", timeout=30,
                                    json={"username": "fred", "password": "fred-password"}).status_code)
        assert set(posts) <= {200, 503} and 200 in posts, posts
        for _ in range(6):  # nginx counts these as idempotent; a 503 may be a COMMIT in doubt
            https.put(f"{cluster.url}/rest/api/2/myself/password?m={marker}", timeout=30,
                      auth=("fred", "fred-password"), json={"currentPassword": "x", "password": "y"})
            https.delete(f"{cluster.url}/rest/pat/latest/tokens/999999?m={marker}", timeout=30,
                         auth=("fred", "fred-password"))
        for _ in range(6):
            for path in ("/rest/api/2/myself", "/issues", "/status"):
                response = https.get(f"{cluster.url}{path}?m={marker}", timeout=30)
                assert response.status_code == 200, (path, response.status_code, response.text[:200])
            assert https.head(f"{cluster.url}/status?m={marker}", timeout=30).status_code == 200
        lines = [line for line in (cluster.nginx_dir / "access.log").read_text().splitlines() if marker in line]
        retried = [line for line in lines if "upstream_status=503, 200 " in line]
        assert retried and all('"GET ' in line or '"HEAD ' in line for line in retried), lines
        assert sum('"PUT ' in line or '"DELETE ' in line for line in lines) == 12, lines
        for line in lines:
            if not ('"GET ' in line or '"HEAD ' in line):  # one process each, never a second one
                assert "," not in UPSTREAM_FIELDS.search(line)["addr"], line
    finally:
        cluster.stop_process(broken)
        cluster.start_process(broken)
        cluster.wait_for_process(broken)


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
    # Chunked, the size is found while the body is read, in @written: the same answer.
    chunked = https.post(cluster.url + "/rest/auth/1/session", data=iter([b"x" * (1024 * 1024 + 1)]),
                         headers={"Content-Type": "application/json"}, timeout=10)
    assert chunked.status_code == 413 and "1048576 bytes" in chunked.json()["errorMessages"][0]


#: The application's headers (appserver/security/perimeter.py), which nginx's own pages repeat.
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
JSON_POLICY = "default-src 'none'; frame-ancestors 'none'"


def assert_security_headers(response, shape: str) -> None:
    """``response.headers`` (requests) or a dict of lower-case names (curl) has them all."""
    headers = {k.lower(): v for k, v in response.headers.items()} if hasattr(response, "headers") else response
    assert headers["strict-transport-security"] == "max-age=31536000"
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["content-security-policy"] == (PAGE_POLICY if shape == "html" else JSON_POLICY)


def assert_jira_json(response: requests.Response, status: int, text: str) -> None:
    assert response.status_code == status, (response.status_code, response.text[:200])
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert_security_headers(response, "json")
    body = response.json()
    assert body["errors"] == {} and text in body["errorMessages"][0], body


def assert_error_page(response: requests.Response, status: int, text: str) -> None:
    assert response.status_code == status, (response.status_code, response.text[:200])
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert_security_headers(response, "html")
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
    # A request line over nginx's 8 KiB buffer: 414, in the same shapes.
    long_query = "?q=" + "a" * 9000
    assert_jira_json(https.get(cluster.url + "/rest/api/2/search" + long_query, timeout=10),
                     414, "URI is longer than this server accepts")
    assert_error_page(https.get(cluster.url + "/issues" + long_query, timeout=10), 414, "URI is longer")
    for path, shape in (("/status", "status"), ("/rest/api/2/myself", "json"), ("/issues", "html")):
        assert error_shape_of(https.get(cluster.url + path + long_query, timeout=10), 414) == shape, path
    assert https.get(cluster.url + "/_errors/json/413", timeout=10).status_code == 404  # internal only
    # Requests no client library sends: Host twice, a header without its colon, no Host.
    for head in ("Host: 127.0.0.1\r\nHost: evil.example", "Host: 127.0.0.1\r\nX-Broken header", ""):
        assert_raw_error(cluster, f"GET /rest/api/2/myself HTTP/1.1\r\n{head}\r\n\r\n", "json")
        assert_raw_error(cluster, f"GET /issues HTTP/1.1\r\n{head}\r\n\r\n", "html")
    # TRACE, which nginx refuses itself: the same shapes (it was nginx's page under /rest too).
    for path, shape in (("/rest/api/2/myself", "json"), ("/issues", "html")):
        traced = https.request("TRACE", cluster.url + path, timeout=10)
        assert error_shape_of(traced, 405) == shape, (path, traced.text[:200])
        assert traced.headers["Allow"] == "GET, HEAD, POST, PUT, DELETE"
    # A broken %-escape: the message names it too (it blamed a header, an outside review).
    assert_raw_error(cluster, "GET /rest/api/2/issue/%zz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "json")
    assert_raw_error(cluster, "GET /issues/%zz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "html")


def error_shape_of(response: requests.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text[:200])
    if response.headers["Content-Type"].startswith("text/html"):
        assert_security_headers(response, "html")
        return "html"
    assert_security_headers(response, "json")
    return "status" if response.json() == {"state": "ERROR"} else "json"


def curl(cluster, *args: str) -> tuple[int, dict[str, str], str]:
    """curl over HTTP/2 (what browsers and curl speak to nginx by default; requests cannot):
    (status, headers with lower-case names, body)."""
    result = subprocess.run(["curl", "--silent", "--show-error", "--http2", "--cacert", str(cluster.ca_file),
                             "--dump-header", "-", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition("\n\n")  # text=True: curl's CRLF read as \n
    status_line, *lines = head.splitlines()
    assert status_line.startswith("HTTP/2 "), status_line  # the check is about HTTP/2
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def test_http2_gets_the_same_refusals_as_http_1_1(cluster, tmp_path):
    """Over HTTP/2 a body over the limit got nginx's own HTML 413 for /rest and pages alike
    (discarding the body failed the limit again inside the error location)."""
    big = tmp_path / "big"
    big.write_bytes(b"x" * (1024 * 1024 + 1))
    status, headers, body = curl(cluster, "--data-binary", f"@{big}", "-H", "Content-Type: application/json",
                                 cluster.url + "/rest/api/2/search")
    assert status == 413 and headers["content-type"] == "application/json;charset=UTF-8", (status, body[:200])
    assert "1048576 bytes" in json.loads(body)["errorMessages"][0]
    assert_security_headers(headers, "json")
    status, headers, body = curl(cluster, "--data-binary", f"@{big}", cluster.url + "/login")
    assert status == 413 and headers["content-type"] == "text/html; charset=utf-8", (status, body[:200])
    assert body.startswith("<!DOCTYPE html>") and "(413)" in body and "1048576 bytes" in body
    assert_security_headers(headers, "html")
    status, headers, body = curl(cluster, "--data-binary", f"@{big}", cluster.url + "/status")
    assert (status, json.loads(body)) == (413, {"state": "ERROR"})
    # And what passes over HTTP/2 is served as over HTTP/1.1.
    status, headers, body = curl(cluster, cluster.url + "/status")
    assert (status, json.loads(body)) == (200, {"state": "RUNNING"})


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
    assert_security_headers({k.lower(): v for k, v in response.getheaders()}, shape)
    message = "The request is malformed (a broken %-escape in its path, or a header broken, repeated or missing, such as Host)"
    if shape == "json":
        assert response.getheader("Content-Type") == "application/json;charset=UTF-8", request
        assert json.loads(body) == {"errorMessages": [message + "; send a well-formed HTTP request."], "errors": {}}
    else:
        assert response.getheader("Content-Type") == "text/html; charset=utf-8", request
        assert body.startswith("<!DOCTYPE html>") and "(400)" in body and message in body


def test_no_process_answering_is_a_retry_after_not_nginx_html(cluster, https):
    """Every process down at once (a bad deploy, a restart of all): nginx's 502 says when to
    try again, in the shape the client reads."""
    for instance in cluster.instances:
        cluster.stop_process(instance)
    try:
        down = https.get(cluster.url + "/rest/api/2/myself", timeout=10)
        assert_jira_json(down, 502, "try again in a few seconds")
        assert down.headers["Retry-After"] == "5"
        page = https.get(cluster.url + "/issues", timeout=10)
        assert_error_page(page, 502, "try again in a few seconds")
        assert page.headers["Retry-After"] == "5"
        status = https.get(cluster.url + "/status", timeout=10)  # the application's own shape
        assert status.status_code == 502 and status.json() == {"state": "ERROR"}, status.text[:200]
        assert status.headers["Content-Type"] == "application/json;charset=UTF-8"
        assert status.headers["Retry-After"] == "5"
        assert_security_headers(status, "json")
        # The methods served through @written (an error_page redirect) get the same pages.
        posted = https.post(cluster.url + "/rest/auth/1/session", json={"username": "x", "password": "y"},
                            timeout=10)
        assert_jira_json(posted, 502, "try again in a few seconds")
        put = https.put(cluster.url + "/issues", data=b"x", timeout=10)
        assert_error_page(put, 502, "try again in a few seconds")
        assert put.headers["Retry-After"] == "5"
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
                            env=cluster.environment(cluster.instances[0]), capture_output=True, text=True, timeout=60)
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
    victim_instance = cluster.instances[1]
    victim = deploy.live_pid(cluster.pid_file(victim_instance), "pserve")
    survivor_name = next(name for name, n in process_names(cluster).items() if n != victim_instance)
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
    # The killed process left its socket file behind: the new one starts all the same.
    assert cluster.socket_path(victim_instance).exists()
    cluster.start_process(victim_instance)
    cluster.wait_for_process(victim_instance)


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
        for _ in range(2 * len(cluster.instances)):  # every process, whichever nginx picks
            status = http.get(cluster.url + "/status", timeout=30)
            assert status.status_code == 503 and status.json() == {"state": "ERROR"}
            page = http.get(cluster.url + "/issues", timeout=30)
            assert page.status_code == 503 and "Try again" in page.text
            rest = http.get(cluster.url + "/rest/api/2/myself", timeout=30)
            assert rest.status_code == 503 and "database is unavailable" in rest.json()["errorMessages"][0]
            # Every process said 503 (nginx tried each): the client gets the application's own.
            assert rest.headers["Retry-After"] and page.headers["Retry-After"], (rest.headers, page.headers)

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
        for _ in range(len(cluster.instances)):  # the same cookie, on every process
            me = http.get(cluster.url + "/rest/api/2/myself", timeout=30)
            assert me.status_code == 200 and me.json()["name"] == "fred"
    finally:
        stop_cluster(cluster)
