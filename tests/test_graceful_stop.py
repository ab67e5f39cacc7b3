"""SIGTERM stops ``pserve production.ini`` gracefully (``egg:appserver#waitress``): new
connections are refused at once, requests in flight finish, then the process exits 0, on a
TCP port and on a Unix socket (production's: ``APPSERVER_LISTEN=unix:PATH``) alike.

Plain waitress ends at SIGTERM's default action and cuts such a request off (checked by hand
when this runner was written); systemd, ``make cluster`` and every rolling restart stop
processes this way.
"""
from __future__ import annotations

import http.client
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import make_url, text

from appserver.models import get_engine

from .conftest import DATABASES
from .support import ROOT, SECRET, production_environment
from .test_cli import BIN, free_port

LOGIN = b'{"username": "fred", "password": "fred-password"}'


@pytest.fixture(scope="module", params=DATABASES)
def served_database(request, tmp_path_factory) -> Iterator[dict[str, str]]:
    """A demo database and the environment production.ini documents, once per module."""
    sqlite_file = tmp_path_factory.mktemp("graceful") / "app.sqlite"
    env = production_environment(request.param, sqlite_file, "graceful", SECRET)
    subprocess.run([str(BIN / "appserver"), "production.ini", "initdb", "--demo"], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=300)
    yield env


@contextmanager
def pserve(env: dict[str, str], tmp_path: Path, graceful_timeout: int | None = None, unix: bool = False):
    """``pserve production.ini`` listening where ``APPSERVER_LISTEN`` says: a free loopback
    port, or (``unix``) a socket in ``tmp_path``, which is then what "port" stands for."""
    port = str(tmp_path / "appserver.sock") if unix else free_port()
    listen = f"unix:{port}" if unix else f"127.0.0.1:{port}"
    ini = ROOT / "production.ini"
    if graceful_timeout is not None:
        ini = tmp_path / "short-graceful-timeout.ini"
        production = ROOT / "production.ini"
        ini.write_text(f"[app:main]\nuse = config:{production}#main\n\n[server:main]\n"
                       f"use = config:{production}#main\ngraceful_timeout = {graceful_timeout}\n")
    log = (tmp_path / f"pserve-{'unix' if unix else port}.log").open("w+")
    process = subprocess.Popen([str(BIN / "pserve"), str(ini)], cwd=tmp_path, stdout=log,
                               stderr=subprocess.STDOUT, env={**env, "APPSERVER_LISTEN": listen})
    try:
        deadline = time.monotonic() + 30
        while not accepts(port):
            assert process.poll() is None and time.monotonic() < deadline, Path(log.name).read_text()
            time.sleep(0.05)  # waiting for the process to listen
        yield process, port, Path(log.name)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        log.close()


def connect(port: int | str, timeout: float = 30) -> socket.socket:
    """A connection to the loopback ``port``, or to the Unix socket at the path ``port``."""
    if isinstance(port, int):
        return socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(port)
    except OSError:
        sock.close()
        raise
    return sock


def accepts(port: int | str) -> bool:
    try:
        connect(port, timeout=1).close()
        return True
    except OSError:
        return False


def wait_until_refused(process: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 10
    while accepts(port):
        assert time.monotonic() < deadline, "still accepting connections 10 s after SIGTERM"
        time.sleep(0.05)
    assert process.poll() is None, "the process exited with a request in flight"


def post_headers(length: int) -> bytes:
    return (b"POST /rest/auth/1/session HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % length)


def read_response(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix-socket"])
def test_sigterm_finishes_a_request_whose_body_is_still_arriving(served_database, tmp_path, unix):
    with pserve(served_database, tmp_path, unix=unix) as (process, port, log):
        client = connect(port)
        client.sendall(post_headers(len(LOGIN)) + LOGIN[:10])  # the request has begun
        process.send_signal(signal.SIGTERM)
        wait_until_refused(process, port)  # no new connections, but still alive for ours
        client.sendall(LOGIN[10:])
        response = read_response(client)
        assert response.startswith(b"HTTP/1.1 200 OK"), response[:300]
        assert b'"loginInfo"' in response
        assert process.wait(timeout=15) == 0
        assert "stopped gracefully" in log.read_text()


def test_sigterm_closes_idle_keep_alive_connections_and_exits(served_database, tmp_path):
    with pserve(served_database, tmp_path) as (process, port, log):
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        client.request("GET", "/status")
        response = client.getresponse()
        assert response.status == 200 and response.read() == b'{"state":"RUNNING"}'
        assert not response.will_close  # HTTP/1.1: the connection stays open, idle
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert client.sock.recv(65536) == b""  # closed by the server, not left hanging


def test_sighup_is_said_and_ignored(served_database, tmp_path):
    """Its default action ended the process at once, with no line, and systemd's
    Restart=on-failure did not start it again (an outside review)."""
    with pserve(served_database, tmp_path) as (process, port, log):
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "SIGHUP ignored" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)  # waiting for the line
        assert "restart it to read new code or settings" in log.read_text()
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        client.request("GET", "/status")
        assert client.getresponse().status == 200
        client.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


def test_sighup_is_ignored_before_the_server_listens():
    """The handler is in place when pserve has only loaded the server, before it binds the
    address and loads the application: a SIGHUP in between ended the process silently (a
    run of the test above met that window)."""
    from appserver import serve

    previous = signal.getsignal(signal.SIGHUP)
    try:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        serve.server_factory({}, listen=f"127.0.0.1:{free_port()}")
        assert signal.getsignal(signal.SIGHUP) is serve.hang_up
    finally:
        signal.signal(signal.SIGHUP, previous)


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix-socket"])
def test_sigterm_waits_for_a_request_the_application_is_serving(served_database, tmp_path, unix):
    """A login that waits for a lock on the sessions table (PostgreSQL: LOCK TABLE, and the
    test sees the backend wait; SQLite: a writer holding the database, which the app's
    busy_timeout waits for) is inside the application when SIGTERM arrives; it finishes."""
    url = served_database["APPSERVER_DATABASE_URL"]
    answer: list[bytes] = []
    with pserve(served_database, tmp_path, unix=unix) as (process, port, log):
        with sessions_locked(url) as wait_for_waiter:
            client = connect(port)
            client.sendall(post_headers(len(LOGIN)) + LOGIN)
            reader = threading.Thread(target=lambda: answer.append(read_response(client)))
            reader.start()
            wait_for_waiter()
            process.send_signal(signal.SIGTERM)
            wait_until_refused(process, port)
        # the lock is gone: the login goes on
        reader.join(timeout=30)
        assert process.wait(timeout=15) == 0
    assert answer and answer[0].startswith(b"HTTP/1.1 200 OK"), answer[:1]
    assert b'"loginInfo"' in answer[0]


@contextmanager
def sessions_locked(url: str):
    """Hold a lock that a login's INSERT INTO sessions must wait for; yields a function that
    returns once somebody waits for it (where the database can tell)."""
    if url.startswith("sqlite"):
        holder = sqlite3.connect(make_url(url).database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield lambda: None
        finally:
            holder.rollback()
            holder.close()
        return
    engine = get_engine({"sqlalchemy.url": url})
    try:
        with engine.connect() as holder:
            holder.execute(text("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE"))
            yield lambda: wait_for_lock_waiter(engine)
            holder.rollback()
    finally:
        engine.dispose()


def wait_for_lock_waiter(engine) -> None:
    """Until a backend waits for a lock: the request is inside the application."""
    with engine.connect() as observer:
        deadline = time.monotonic() + 20
        while not observer.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )).scalar():
            assert time.monotonic() < deadline, "the login never reached the locked table"
            time.sleep(0.05)
            observer.rollback()


def test_graceful_timeout_bounds_the_wait(served_database, tmp_path):
    """A request that never completes cannot hold the stop longer than graceful_timeout."""
    with pserve(served_database, tmp_path, graceful_timeout=1) as (process, port, log):
        client = socket.create_connection(("127.0.0.1", port), timeout=30)
        client.sendall(post_headers(len(LOGIN)))  # and the body never comes
        process.send_signal(signal.SIGTERM)
        wait_until_refused(process, port)
        assert process.wait(timeout=15) == 0
        assert "1 request(s) still in flight are cut off" in log.read_text()
        client.close()


# --- a Unix socket: who is trusted, a socket left behind, a socket in use --------------------------


def request_over(port: int | str, head: str) -> bytes:
    client = connect(port)
    client.sendall(head.encode())
    try:
        return read_response(client)
    finally:
        client.close()


def login_url(response: bytes) -> str:
    (challenge,) = [line for line in response.split(b"\r\n") if line.lower().startswith(b"www-authenticate:")]
    return challenge.decode().split('login-url="', 1)[1].split('"', 1)[0]


FORWARDED = ("GET /rest/api/2/myself HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
             "X-Forwarded-Proto: https\r\nX-Forwarded-Host: localhost\r\nX-Forwarded-Port: 443\r\n"
             "X-Forwarded-For: 203.0.113.7\r\n\r\n")


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix-socket"])
def test_who_may_send_forwarded_headers(served_database, tmp_path, unix):
    """On its socket production.ini trusts X-Forwarded-* from whoever may connect, which the
    socket's mode (660, production.ini's unix_socket_perms) limits to the service's user and
    group (nginx's user joins it). On a TCP port it trusts 127.0.0.1: any local process, as
    docs/deployment.md warns; production therefore never listens on one."""
    with pserve(served_database, tmp_path, unix=unix) as (process, port, log):
        assert login_url(request_over(port, FORWARDED)) == "https://localhost/rest/auth/1/session"
        if unix:
            assert oct(Path(port).stat().st_mode & 0o777) == oct(0o660)


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix-socket"])
def test_production_says_where_it_listens(served_database, tmp_path, unix):
    """production.ini shows waitress's own lines from WARN only: its "Serving on" line went
    unseen, and a person who started it by hand could not tell where it listened (an
    outside review). It is said through the application's logger."""
    with pserve(served_database, tmp_path, unix=unix) as (process, port, log):
        deadline = time.monotonic() + 10
        expected = f"Serving on unix:{port}" if unix else f"Serving on http://127.0.0.1:{port}"
        while expected not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)


def test_a_socket_left_by_a_killed_process_does_not_stop_the_next(served_database, tmp_path):
    with pserve(served_database, tmp_path, unix=True) as (process, path, log):
        process.kill()  # SIGKILL: the socket file stays behind
        process.wait(timeout=10)
    assert Path(path).is_socket() and not accepts(path)
    with pserve(served_database, tmp_path, unix=True) as (process, path, log):
        assert request_over(path, "GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                            ).startswith(b"HTTP/1.1 200 OK")


def test_a_socket_in_use_is_refused_in_one_line(served_database, tmp_path):
    """waitress itself would unlink the running server's socket and take its place."""
    with pserve(served_database, tmp_path, unix=True) as (process, path, log):
        second = subprocess.run([str(BIN / "pserve"), str(ROOT / "production.ini")], cwd=tmp_path,
                                env={**served_database, "APPSERVER_LISTEN": f"unix:{path}",
                                     "PYTHONWARNINGS": "ignore:pkg_resources is deprecated:UserWarning"},
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines() == [
            f"unix:{path} is in use — is another server running? Stop it, or give another socket path: "
            "APPSERVER_LISTEN=unix:PATH"], second.stderr
        assert accepts(path)  # the first one still serves


def test_two_servers_started_at_once_on_one_socket(served_database, tmp_path):
    """Both would find the path free and load the application; the second to bind would
    unlink the first's socket, which would run on, reachable by no one (an outside review).
    The lock beside the socket lets one start; the other says why it does not."""
    path = tmp_path / "appserver.sock"
    env = {**served_database, "APPSERVER_LISTEN": f"unix:{path}",
           "PYTHONWARNINGS": "ignore:pkg_resources is deprecated:UserWarning"}
    processes = [subprocess.Popen([str(BIN / "pserve"), str(ROOT / "production.ini")], cwd=tmp_path, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 30
        while not (accepts(str(path)) and any(process.poll() is not None for process in processes)):
            assert time.monotonic() < deadline, "both still running, or neither serves"
            time.sleep(0.05)
        (refused,) = [process for process in processes if process.poll() is not None]
        assert refused.returncode == 1
        assert refused.stderr.read().strip().splitlines() == [
            f"unix:{path} is in use — is another server running? Stop it, or give another socket path: "
            "APPSERVER_LISTEN=unix:PATH"]
        (running,) = [process for process in processes if process is not refused]
        assert request_over(str(path), "GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                            ).startswith(b"HTTP/1.1 200 OK")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            process.stderr.close()
