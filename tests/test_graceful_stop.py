"""SIGTERM stops ``pserve production.ini`` gracefully (``egg:appserver#waitress``): new
connections are refused at once, requests in flight finish, then the process exits 0.

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
def pserve(env: dict[str, str], tmp_path: Path, graceful_timeout: int | None = None):
    """``pserve production.ini`` listening where ``APPSERVER_LISTEN`` says."""
    port = free_port()
    ini = ROOT / "production.ini"
    if graceful_timeout is not None:
        ini = tmp_path / "short-graceful-timeout.ini"
        production = ROOT / "production.ini"
        ini.write_text(f"[app:main]\nuse = config:{production}#main\n\n[server:main]\n"
                       f"use = config:{production}#main\ngraceful_timeout = {graceful_timeout}\n")
    log = (tmp_path / f"pserve-{port}.log").open("w+")
    process = subprocess.Popen([str(BIN / "pserve"), str(ini)], cwd=tmp_path, stdout=log,
                               stderr=subprocess.STDOUT, env={**env, "APPSERVER_LISTEN": f"127.0.0.1:{port}"})
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


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
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


def test_sigterm_finishes_a_request_whose_body_is_still_arriving(served_database, tmp_path):
    with pserve(served_database, tmp_path) as (process, port, log):
        client = socket.create_connection(("127.0.0.1", port), timeout=30)
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


def test_sigterm_waits_for_a_request_the_application_is_serving(served_database, tmp_path):
    """A login that waits for a lock on the sessions table (PostgreSQL: LOCK TABLE, and the
    test sees the backend wait; SQLite: a writer holding the database, which the app's
    busy_timeout waits for) is inside the application when SIGTERM arrives; it finishes."""
    url = served_database["APPSERVER_DATABASE_URL"]
    answer: list[bytes] = []
    with pserve(served_database, tmp_path) as (process, port, log):
        with sessions_locked(url) as wait_for_waiter:
            client = socket.create_connection(("127.0.0.1", port), timeout=30)
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
