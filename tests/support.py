"""Helpers shared by the test modules: database set-up, a live waitress server, users."""
from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import transaction
from alembic import command
from alembic.config import Config as AlembicConfig
from pyramid.router import Router
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import Engine

import appserver
from appserver.clock import FrozenClock
from appserver.demo import ensure_user
from appserver.models import get_engine, metadata
from appserver.security.passwords import make_context
from appserver.serve import create_server

from .pgserver import find_bindir

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-0123456789-0123456789-abcdef"
#: argon2id at 64 KiB and one pass: a thirtieth of production's cost, so that the thousands
#: of logins and accounts the suite makes do not dominate its time. Production's parameters
#: are what the command-line, pserve and load tests run (their own processes), and what
#: tests/test_password_concurrency.py measures; tests/test_passwords.py checks them.
CHEAP_PASSWORDS = make_context(memory_kib=64, time_cost=1)


def base_settings(database_url: str, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "sqlalchemy.url": database_url,
        "appserver.secret": SECRET,
        "appserver.session.secure": "false",
        "appserver.session.idle_timeout": "1800",
        "appserver.session.max_age": "43200",
        "appserver.session.touch_interval": "60",
        "pyramid.reload_templates": "false",
        "retry.attempts": "3",
    }
    settings.update(overrides)
    return settings


def alembic_config(connection=None) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def reset_database(engine: Engine) -> None:
    """Start from an empty database, whatever an earlier run left behind."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        else:
            for table in reversed(metadata.sorted_tables):
                connection.execute(text(f'DROP TABLE IF EXISTS "{table.name}"'))
            connection.execute(text("DROP TABLE IF EXISTS alembic_version"))


def sibling_database(url: str, suffix: str) -> str:
    """A second PostgreSQL database next to ``url`` (created if missing), so live servers,
    which commit for real, never touch the functional tests' database."""
    base = make_url(url)
    name = f"{base.database}_{suffix}"
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        exists = connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        ).scalar()
        if not exists:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def production_environment(database: str, sqlite_file: Path, suffix: str, secret: str) -> dict[str, str]:
    """The environment production.ini documents (APPSERVER_SECRET, APPSERVER_DATABASE_URL,
    APPSERVER_ALLOWED_HOSTS) for a process of its own, on an emptied PostgreSQL database ``<test db>_<suffix>`` or
    on the SQLite file ``sqlite_file``; no other APPSERVER_* variable leaks in."""
    if database == "postgresql":
        url = sibling_database(os.environ["TEST_DATABASE_URL"], suffix)
        engine = get_engine({"sqlalchemy.url": url})
        reset_database(engine)
        engine.dispose()
    else:
        url = f"sqlite:///{sqlite_file}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPSERVER_")}
    # APPSERVER_ALLOWED_HOSTS: production.ini names no host (appserver.allowed_hosts).
    env.update(APPSERVER_SECRET=secret, APPSERVER_DATABASE_URL=url, APPSERVER_ALLOWED_HOSTS="127.0.0.1 localhost",
               PYTHONUNBUFFERED="1")
    return env


def migrate(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def empty_tables(engine: Engine) -> None:
    """Delete every row (live-server tests commit for real)."""
    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())


def create_user(request_or_env, username: str, password: str, **kw: Any):
    user, _ = ensure_user(
        request_or_env,
        username,
        password,
        kw.get("display_name", username.title()),
        kw.get("email", f"{username}@example.com"),
        kw.get("admin", False),
    )
    return user


@dataclass
class LiveServer:
    """The app served by waitress on a loopback port, in a thread of the test process."""

    url: str
    app: Router
    clock: FrozenClock
    engine: Engine
    _server: Any = None
    _thread: threading.Thread | None = None
    log: list[str] = field(default_factory=list)

    @contextmanager
    def request(self) -> Iterator[Any]:
        """An app request (``request.dbsession`` etc.) in a committed transaction."""
        from pyramid.scripting import prepare

        env = prepare(registry=self.app.registry)
        try:
            with env["request"].tm:
                yield env["request"]
        finally:
            env["closer"]()

    def stop(self) -> None:
        stop_server(self._server, self._thread, self.url)


def serve_in_thread(server: Any) -> threading.Thread:
    """Run a waitress server's main loop in a daemon thread of the test process."""
    thread = threading.Thread(target=server.run, name=f"waitress-{server.effective_port}", daemon=True)
    thread.start()
    return thread


@contextmanager
def serving(server: Any) -> Iterator[Any]:
    """``server`` running in a thread for the ``with`` block, stopped as ``stop_server`` does."""
    thread = serve_in_thread(server)
    try:
        yield server
    finally:
        stop_server(server, thread, f"port {server.effective_port}")


def stop_server(server: Any, thread: threading.Thread | None, label: str) -> None:
    """Stop a waitress server running in ``thread``, from another thread.

    Every socket is closed, clients' keep-alive connections too (waitress's loop only ends
    when its socket map is empty), in the loop's own thread through the trigger: a socket
    closed from here under a running select() crashes that thread with EBADF (seen in CI when
    ``server.close()`` was called from the test).
    """
    from waitress import wasyncore

    try:
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
    except OSError as error:
        # Seen once in a full run (EBADF: the trigger's pipe was closed under it, by a
        # descriptor closed twice somewhere in this test process). The loop cannot be
        # woken, and closing its sockets from here could crash it mid-select: leave the
        # daemon thread and its sockets to the end of the process.
        warnings.warn(f"server at {label}: its trigger is gone ({error}); loop left running",
                      ResourceWarning, stacklevel=2)
        server.task_dispatcher.shutdown()
        return
    if thread is not None:
        thread.join(timeout=10)
    server.task_dispatcher.shutdown()


class DriverStatements:
    """Every statement ``engine``'s connections hand to their driver, as the database gets
    it: SQLite's trace callback (BEGIN and ROLLBACK included), psycopg's cursors (each with
    the connection's autocommit at that moment: without it, psycopg sends a BEGIN first).
    Unlike an engine's ``before_cursor_execute``, it also sees the credential lookups that
    run on the driver's cursor (``appserver.models.prepared``). The pool is emptied on
    entry so that every connection is made, and traced, anew."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen: list[tuple[str, bool | None]] = []
        self._lock = threading.Lock()

    def _note(self, statement: str, autocommit: bool | None = None) -> None:
        with self._lock:
            self.seen.append((statement, autocommit))

    def _connected(self, dbapi_connection: Any, record: Any) -> None:
        if self.engine.dialect.name == "sqlite":
            dbapi_connection.set_trace_callback(self._note)
            return
        import psycopg

        note = self._note

        class Tracing(psycopg.Cursor):
            def execute(self, query, params=None, **kw):
                note(str(query), self.connection.autocommit)
                return super().execute(query, params, **kw)

        dbapi_connection.cursor_factory = Tracing

    def __enter__(self) -> DriverStatements:
        from sqlalchemy import event

        self.engine.dispose()
        event.listen(self.engine, "connect", self._connected)
        return self

    def __exit__(self, *exc: object) -> None:
        from sqlalchemy import event

        event.remove(self.engine, "connect", self._connected)
        self.engine.dispose()

    @property
    def statements(self) -> list[str]:
        return [statement for statement, _ in self.seen]

    def verbs(self) -> list[str]:
        return [statement.split(None, 1)[0].upper() for statement in self.statements]


def fresh_database(url: str) -> str:
    """Empty the database at ``url`` and migrate it to head; returns ``url``."""
    engine = get_engine({"sqlalchemy.url": url})
    reset_database(engine)
    migrate(engine)
    engine.dispose()
    return url


@contextmanager
def postgresql_live_server(suffix: str, **overrides: Any) -> Iterator[LiveServer]:
    """A live server of its own on an emptied, migrated PostgreSQL database ``<test db>_<suffix>``,
    for what only a database across a network does (lock waits, a COMMIT's answer lost)."""
    url = fresh_database(sibling_database(os.environ["TEST_DATABASE_URL"], suffix))
    server = start_live_server(url, threads=2, **overrides)
    try:
        yield server
    finally:
        server.stop()
        server.engine.dispose()


def start_live_server(
    database_url: str, *, demo: bool = True, threads: int = 4, **overrides: Any
) -> LiveServer:
    clock = FrozenClock(datetime.now(timezone.utc).replace(microsecond=0))
    settings = base_settings(database_url, **overrides)
    engine = get_engine(settings)
    settings["appserver.dbengine"] = engine
    settings["appserver.clock"] = clock
    settings.setdefault("appserver.password_context", CHEAP_PASSWORDS)
    app = appserver.main({}, **settings)
    server = create_server(app, host="127.0.0.1", port=0, threads=threads)  # production's channels
    port = server.effective_port
    live = LiveServer(f"http://127.0.0.1:{port}", app, clock, engine, server)
    if demo:
        from appserver.demo import seed_demo

        with live.request() as request:
            for _ in seed_demo(request):
                pass
    live._thread = serve_in_thread(server)
    return live


@dataclass(frozen=True)
class Exchange:
    """One HTTP request a client really sent, and the status it really got."""

    method: str
    path: str
    status: int
    cookie: str
    authorization: str


def record_http(monkeypatch) -> list[Exchange]:
    """Record every request that any ``requests``-based client (jira, atlassian-python-api,
    appserver.client) sends in this test, at the transport level: a 401 that the client
    handles by logging in again shows up here even though the caller never sees it."""
    import requests.adapters

    exchanges: list[Exchange] = []
    send = requests.adapters.HTTPAdapter.send

    def recording_send(adapter, request, *args, **kwargs):
        response = send(adapter, request, *args, **kwargs)
        exchanges.append(
            Exchange(
                request.method,
                request.path_url,
                response.status_code,
                request.headers.get("Cookie", ""),
                request.headers.get("Authorization", ""),
            )
        )
        return response

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", recording_send)
    return exchanges


def browser_logged_in(testapp, username: str, password: str | None = None):
    """A WebTest client of ``testapp``'s app with a cookie jar of its own, logged in through
    the login form as a person does (``<username>-password`` by default)."""
    import webtest

    client = webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)
    form = client.get("/login").forms["login-form"]
    form["os_username"], form["os_password"] = username, password or f"{username}-password"
    form.submit(status=303)
    return client


def confirm_websudo(client, password: str, destination: str = "/admin/users"):
    """Confirm the password at the WebSudo prompt the way a person does (the real form, CSRF
    token and all), so a logged-in administrator's cookie session may do admin work; returns
    the final response (303 to ``destination``)."""
    prompt = client.get("/websudo", params={"os_destination": destination})
    if prompt.status_int == 303:  # already elevated, or WebSudo is switched off
        return prompt
    form = prompt.forms["websudo-form"]
    form["websudo_password"] = password
    return form.submit(status=303)


def require_private_postgres() -> None:
    """For tests that start their own PostgreSQL (tests/pgserver.py) to restart it: they run
    when the suite runs on PostgreSQL (TEST_DATABASE_URL), and in CI
    (APPSERVER_REQUIRE_ALL_TESTS=1) missing initdb/pg_ctl is a failure, not a skip."""
    if not os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("PostgreSQL tests run when TEST_DATABASE_URL is set")
    if find_bindir() is None:
        message = "PostgreSQL's initdb/pg_ctl not found (install postgresql, or set APPSERVER_PG_BINDIR)"
        if os.environ.get("APPSERVER_REQUIRE_ALL_TESTS") == "1":
            pytest.fail(message)
        pytest.skip(message)


def wait_until_blocked(server, started: threading.Event) -> None:
    """Return once the other side is waiting for our transaction: on PostgreSQL, when a
    backend waits for a lock; on SQLite (which shows no waiters) once the other thread runs,
    which gives the same outcome whether or not it reached the lock yet."""
    assert started.wait(10)
    if server.engine.dialect.name != "postgresql":
        return
    deadline = time.monotonic() + 10
    with server.engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.execute(
                text("SELECT count(*) FROM pg_stat_activity "
                     "WHERE wait_event_type = 'Lock' AND datname = current_database()")
            ).scalar()
            connection.rollback()
            if waiting:
                return
            time.sleep(0.02)
    pytest.fail("the other transaction never waited for ours")
