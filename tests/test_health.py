"""``GET /status`` (Jira Data Center's health check) and the opt-in ``X-Appserver-Process``
header (issue 13: what nginx, load balancers and operators ask a process)."""
from __future__ import annotations

import base64
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import webtest
from sqlalchemy import func, make_url, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

import appserver
from appserver.models import LoginThrottle, UserSession, get_engine
from appserver.settings import ConfigurationError

from .conftest import DATABASES
from .relay import TCPRelay
from .support import ROOT, base_settings, migrate
from .test_sessions import rest_login


def test_status_is_running_while_the_database_answers(testapp):
    response = testapp.get("/status")
    assert response.status_int == 200
    assert response.json == {"state": "RUNNING"}
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert testapp.head("/status").status_int == 200


def test_status_reads_no_credential_and_sets_no_cookie(testapp, users, dbsession, count_statements):
    """Whatever credentials come along (a live cookie, a stale one, wrong Basic, a demand for
    Basic), /status looks at none: one SELECT 1, no failure counted, no cookie, no identity."""
    live = rest_login(testapp)
    wrong_basic = "Basic " + base64.b64encode(b"fred:wrong-password").decode()
    for headers in (
        {"Cookie": f"appserver.session={live}"},
        {"Cookie": "appserver.session=" + "x" * 43},  # stale: elsewhere it is deleted or a 401
        {"Authorization": wrong_basic},  # elsewhere a 401 and a failure counted
    ):
        count_statements.reset()
        response = testapp.get("/status?os_authType=basic", headers=headers)
        assert response.status_int == 200 and response.json == {"state": "RUNNING"}
        assert "Set-Cookie" not in response.headers
        # Served for nobody: named so, as every answer names its user (an outside review).
        assert response.headers["X-AUSERNAME"] == "anonymous" and "X-Seraph-LoginReason" not in response.headers
        assert [" ".join(s.split()) for s in count_statements.statements] == [
            "SELECT version_num FROM alembic_version"]
    dbsession.expire_all()
    assert dbsession.scalar(select(func.count()).select_from(LoginThrottle)) == 0
    assert dbsession.scalar(select(func.count()).select_from(UserSession)) == 1  # the login only


def test_status_accepts_only_get_and_head(testapp):
    response = testapp.post("/status", status=405)
    assert response.headers["Allow"] == "GET, HEAD"
    assert response.json == {"errorMessages": ["POST is not allowed here: use GET."], "errors": {}}
    assert response.headers["X-AUSERNAME"] == "anonymous"


def unreachable_url(database_url: str, tmp_path: Path) -> str:
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'no-such-directory' / 'app.sqlite'}"
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return make_url(database_url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def test_status_is_an_error_while_the_database_is_unreachable(make_app, database_url, tmp_path):
    engine = get_engine({"sqlalchemy.url": unreachable_url(database_url, tmp_path)})
    app = make_app(**{"appserver.dbengine": engine})
    response = app.get("/status", status=503)
    assert response.json == {"state": "ERROR"}
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["Cache-Control"] == "no-store"
    engine.dispose()


@dataclass
class Interruptible:
    """An engine on a database that the test takes away and brings back: a SQLite file
    whose folder is renamed, PostgreSQL behind a TCP relay that is stopped."""

    engine: Engine
    stop: Callable[[], None]
    restart: Callable[[], None]


@pytest.fixture
def interruptible(database_url: str, tmp_path: Path) -> Iterator[Interruptible]:
    relay = None
    if database_url.startswith("sqlite"):
        directory, away = tmp_path / "data", tmp_path / "unmounted"
        directory.mkdir()
        engine = get_engine({"sqlalchemy.url": f"sqlite:///{directory / 'app.sqlite'}", "sqlalchemy.poolclass": NullPool})
        migrate(engine)
        database = Interruptible(engine, lambda: directory.rename(away), lambda: away.rename(directory))
    else:
        real = make_url(database_url)
        relay = TCPRelay(real.host or "127.0.0.1", real.port or 5432)
        relay.start()
        via_relay = real.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
        engine = get_engine({"sqlalchemy.url": via_relay, "sqlalchemy.pool_pre_ping": "true"})
        database = Interruptible(engine, relay.stop, relay.start)
    try:
        yield database
    finally:
        engine.dispose()
        if relay is not None:
            relay.stop()


def test_status_recovers_by_itself_when_the_database_returns(make_app, interruptible):
    """The database goes and comes back: ERROR, then RUNNING again, with no restart."""
    app = make_app(**{"appserver.dbengine": interruptible.engine})
    assert app.get("/status").json == {"state": "RUNNING"}
    interruptible.stop()
    assert app.get("/status", status=503).json == {"state": "ERROR"}
    interruptible.restart()
    assert app.get("/status").json == {"state": "RUNNING"}


def test_the_log_says_once_when_the_database_answers_again(interruptible, caplog):
    """Refusals are logged at a bounded rate; the return is said once, with how long the
    database was away and how many requests were refused (an outside review: nothing said
    it came back). The watch's thread asks every few seconds; here the test asks."""
    engine = interruptible.engine
    # Not bound to the test's transaction, as make_app's apps are: requests use the engine.
    settings = {**base_settings(engine.url.render_as_string(hide_password=False)), "appserver.dbengine": engine}
    app = webtest.TestApp(appserver.main({}, **settings), extra_environ={"HTTP_HOST": "localhost"})
    watch = app.app.registry.outage_watch
    watch.interval = 3600  # its thread sleeps through the test
    basic = {"Authorization": "Basic " + base64.b64encode(b"nobody:some-password").decode()}
    interruptible.stop()
    for _ in range(2):
        app.get("/rest/api/2/myself", headers=basic, status=503)
    assert not watch.check()
    interruptible.restart()
    with caplog.at_level(logging.WARNING, logger="appserver.health"):
        assert watch.check() and watch.check()
    said = [record.getMessage() for record in caplog.records if "can be used again" in record.getMessage()]
    assert len(said) == 1 and "2 request(s) were answered 503" in said[0], said


def test_a_busy_database_is_no_outage_to_watch():
    """A lock held past lock_timeout, or a pool with no connection free, refuses requests
    while the database answers: the watch would say "can be used again" at once (an outside
    review). Neither starts it; a connection refused does."""
    from types import SimpleNamespace

    from sqlalchemy import exc as sa_exc

    from appserver.health import NO_REVISIONS, OutageWatch

    watch = OutageWatch(SimpleNamespace(dbengine=None, code_revisions=NO_REVISIONS), interval=3600)
    lock_timeout = sa_exc.OperationalError("SELECT", {}, SimpleNamespace(sqlstate="55P03"))
    watch.refused_request(lock_timeout)
    watch.refused_request(sa_exc.TimeoutError("QueuePool limit of size 5 overflow 0 reached"))
    assert watch.since is None and watch.refused == 0
    watch.refused_request(sa_exc.OperationalError("connect", {}, OSError("connection refused")))
    assert watch.since is not None and watch.refused == 1


def test_status_is_an_error_while_the_schema_is_behind_this_code(tmp_path, caplog):
    """A process started before the migration it needs (a rolling upgrade in the wrong
    order) fails every request that touches a new column: ERROR, saying what to run (an
    outside review: RUNNING). A revision this code does not know is a newer release's: a
    process of the previous release goes on serving while the next one rolls out."""
    from appserver.startup import app_factory

    path = tmp_path / "app.sqlite"
    migrate(get_engine({"sqlalchemy.url": f"sqlite:///{path}"}))
    # As pserve makes it: the migrations are read from the ini's [alembic] section (where an
    # installed package finds them too, an outside review: not beside the package).
    app = webtest.TestApp(app_factory({"__file__": str(ROOT / "development.ini")}, **base_settings(f"sqlite:///{path}")))
    engine = app.app.registry.dbengine
    head, older = app.app.registry.code_revisions
    assert head is not None and older
    try:
        for revision, status, state in ((sorted(older)[-1], 503, "ERROR"), ("9999_next_release", 200, "RUNNING"),
                                        (head, 200, "RUNNING")):
            with engine.begin() as connection:
                connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
            assert app.get("/status", status=status).json == {"state": state}, revision
        assert f"this code needs {head}: run 'appserver CONFIG initdb'" in caplog.text
    finally:
        engine.dispose()


def test_status_is_an_error_for_an_empty_database(tmp_path):
    """Every request of a server whose database has no tables is a 503 ("run initdb"): a
    load balancer must not send it any (an outside review: RUNNING while every request
    failed)."""
    app = webtest.TestApp(appserver.main({}, **base_settings(f"sqlite:///{tmp_path / 'empty.sqlite'}")))
    assert app.get("/status", status=503).json == {"state": "ERROR"}
    app.app.registry.dbengine.dispose()


def test_status_is_an_error_once_the_sqlite_file_is_deleted(tmp_path):
    """The pooled connections keep writing to the unlinked file, and a restart starts from
    an empty one: every write in between is lost. The check looks at the path."""
    path = tmp_path / "app.sqlite"
    engine = get_engine({"sqlalchemy.url": f"sqlite:///{path}"})
    migrate(engine)
    app = webtest.TestApp(appserver.main({}, **base_settings(f"sqlite:///{path}", **{"appserver.dbengine": engine})))
    try:
        assert app.get("/status").json == {"state": "RUNNING"}
        path.unlink()
        assert app.get("/status", status=503).json == {"state": "ERROR"}
    finally:
        engine.dispose()


def test_status_is_an_error_once_the_sqlite_file_is_replaced(tmp_path):
    """A restore by ``mv backup app.sqlite``: the path is there, but the pooled connections
    still read the old, unlinked file, and every write fails ("readonly database")."""
    path, backup = tmp_path / "app.sqlite", tmp_path / "backup.sqlite"
    engine = get_engine({"sqlalchemy.url": f"sqlite:///{path}"})
    migrate(engine)
    other = get_engine({"sqlalchemy.url": f"sqlite:///{backup}"})
    migrate(other)
    other.dispose()
    app = webtest.TestApp(appserver.main({}, **base_settings(f"sqlite:///{path}", **{"appserver.dbengine": engine})))
    try:
        assert app.get("/status").json == {"state": "RUNNING"}
        backup.replace(path)
        assert app.get("/status", status=503).json == {"state": "ERROR"}
    finally:
        engine.dispose()


# --- X-Appserver-Process ---------------------------------------------------------------------


def test_no_process_header_by_default(testapp):
    for path in ("/", "/status", "/rest/api/2/serverInfo", "/static/style.css"):
        assert "X-Appserver-Process" not in testapp.get(path).headers


def test_the_process_header_names_host_and_process_on_every_response(make_app):
    app = make_app(**{"appserver.process_header": "true"})
    expected = f"{socket.gethostname()}:{os.getpid()}"
    for path, status in (("/", 200), ("/status", 200), ("/static/style.css", 200), ("/nowhere", 404),
                         ("/rest/api/2/myself", 401)):
        assert app.get(path, status=status).headers["X-Appserver-Process"] == expected


def test_the_process_header_can_be_turned_on_from_the_environment(make_app, monkeypatch):
    monkeypatch.setenv("APPSERVER_PROCESS_HEADER", "true")
    assert "X-Appserver-Process" in make_app().get("/status").headers


def test_a_bad_process_header_value_stops_start_up(make_app):
    with pytest.raises(ConfigurationError, match="appserver.process_header"):
        make_app(**{"appserver.process_header": "sometimes"})


# --- A database that does not answer ---------------------------------------------------------


class BlackHole:
    """A TCP port that accepts connections and never says a word: a database host that is
    up but frozen, or a failover's address before it moved."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.accepted.append(self.listener.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        for sock in self.accepted:
            sock.close()


def test_a_database_that_never_answers_is_a_503_not_a_hang():
    """libpq waits for the kernel's TCP timeout, minutes, without connect_timeout: every
    request and /status hung (an outside review: 60 s until nginx's 504). libpq against a
    port that accepts and stays silent: no PostgreSQL server is needed."""
    hole = BlackHole()
    url = f"postgresql+psycopg://appserver@127.0.0.1:{hole.port}/appserver"
    engine = get_engine({"sqlalchemy.url": url, "appserver.database.connect_timeout": "1"})
    app = webtest.TestApp(appserver.main({}, **{**base_settings(url), "appserver.dbengine": engine}),
                          extra_environ={"HTTP_HOST": "localhost"})
    basic = {"Authorization": "Basic " + base64.b64encode(b"fred:fred-password").decode()}
    pool = ThreadPoolExecutor(2)  # a hang fails the test instead of holding it
    try:
        status = pool.submit(app.get, "/status", status=503)
        rest = pool.submit(app.get, "/rest/api/2/myself", headers=basic, status=503)
        assert status.result(timeout=30).json == {"state": "ERROR"}
        answer = rest.result(timeout=30)
        assert answer.headers["Retry-After"] and answer.json["errorMessages"]
    finally:
        hole.close()  # a connection still waiting is cut: its thread ends
        pool.shutdown(wait=True)
        engine.dispose()


@pytest.mark.skipif("postgresql" not in DATABASES, reason="needs TEST_DATABASE_URL (PostgreSQL)")
def test_the_connection_limits_reach_libpq_unless_the_url_gives_its_own():
    database_url = os.environ["TEST_DATABASE_URL"]
    own = make_url(database_url).update_query_dict({"connect_timeout": "2"}).render_as_string(hide_password=False)
    for url, settings, expected in [
        (database_url, {}, {"connect_timeout": "5", "tcp_user_timeout": "15000", "keepalives": "1"}),
        (own, {}, {"connect_timeout": "2", "tcp_user_timeout": "15000"}),
        (database_url, {"appserver.database.connect_timeout": "0", "appserver.database.network_timeout": "0"},
         {"connect_timeout": None, "tcp_user_timeout": None, "keepalives": None}),
    ]:
        engine = get_engine({"sqlalchemy.url": url, **settings})
        try:
            with engine.connect() as connection:
                parameters = connection.connection.dbapi_connection.info.get_parameters()
        finally:
            engine.dispose()
        assert {key: parameters.get(key) for key in expected} == expected


class FrozenEngine:
    """An engine whose connections hang until released: the database frozen mid-way."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.connects = 0

    url = make_url("sqlite://")

    def connect(self):
        self.connects += 1
        self.release.wait(30)
        connection = get_engine({"sqlalchemy.url": "sqlite://"}).connect()
        connection.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        return connection


def test_status_answers_error_by_its_deadline_and_probes_one_at_a_time():
    """A frozen database sends no error: /status says ERROR when its deadline passes, and
    further checks wait on the probe in flight instead of each holding a thread and a
    connection of their own; once the database answers, RUNNING again."""
    from types import SimpleNamespace

    from appserver.health import NO_REVISIONS, DatabaseProbe

    frozen = FrozenEngine()
    probe = DatabaseProbe(SimpleNamespace(dbengine=frozen, code_revisions=NO_REVISIONS), deadline=0.05)
    assert probe.reachable() is False
    assert probe.reachable() is False
    assert frozen.connects == 1
    frozen.release.set()
    probe.deadline = 10
    assert probe.reachable() is True  # the probe in flight, or a new one once it returned
    before = frozen.connects
    assert probe.reachable() is True and frozen.connects == before + 1  # each check afresh
