"""Fixtures: the suite runs once on SQLite and, with TEST_DATABASE_URL, once on PostgreSQL.

Schema comes from ``alembic upgrade head``. Each test runs in a transaction that is rolled
back (the app's commits become savepoints), and time comes from a frozen clock the test can
move.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import webtest
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

import appserver
from appserver.clock import FrozenClock
from appserver.models import get_engine

from .support import (
    CHEAP_PASSWORDS,
    base_settings,
    fresh_database,
    migrate,
    reset_database,
    sibling_database,
    start_live_server,
)

#: The ``cluster`` fixture (make cluster: nginx, TLS, two processes), started only when asked.
pytest_plugins = ("tests.deployment_fixtures",)

DATABASES = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])
REQUIRE_ALL = os.environ.get("APPSERVER_REQUIRE_ALL_TESTS") == "1"


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "loadscopereorder", None):
        # pytest-xdist's --dist loadfile hands files out in the workers' collection order,
        # which slowest_files_first sets, instead of most tests first.
        config.option.loadscopereorder = False
    if REQUIRE_ALL and "postgresql" not in DATABASES:
        raise pytest.UsageError("APPSERVER_REQUIRE_ALL_TESTS=1 needs TEST_DATABASE_URL (PostgreSQL)")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and "postgresql" in DATABASES:
        # make test runs two pytest-xdist workers: each empties and migrates its database, and
        # every sibling (<db>_cli, <db>_live...) is named after it, so each has its own.
        os.environ["TEST_DATABASE_URL"] = sibling_database(os.environ["TEST_DATABASE_URL"], worker)


#: Files of a few tests that wait on processes and servers for most of a minute (tests/load,
#: nginx clusters, pserve, the command line): in pytest-xdist workers they are handed out
#: first, so that no worker is left running one alone at the end (xdist's own order, most
#: tests first, put test_loadtest.py's two last).
SLOW_FILES = (
    "tests/test_cli.py",
    "tests/test_startup.py",
    "tests/test_deployment.py",
    "tests/test_graceful_stop.py",
    "tests/test_loadtest.py",
)


def slowest_files_first(items: list[pytest.Item]) -> None:
    """The order pytest-xdist hands files out in (``--dist loadfile`` without reordering):
    SLOW_FILES first, then the other files with the most tests first. Every worker collects
    the same order, as xdist requires."""
    per_file: dict[str, int] = {}
    for item in items:
        path = item.nodeid.split("::")[0]
        per_file[path] = per_file.get(path, 0) + 1

    def rank(item: pytest.Item) -> tuple[int, int, str]:
        path = item.nodeid.split("::")[0]
        if path in SLOW_FILES:
            return (0, SLOW_FILES.index(path), path)
        return (1, -per_file[path], path)

    items.sort(key=rank)  # stable: a file's tests keep their order


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        slowest_files_first(items)
    for item in items:
        # Every database fixture (database_url, live_database_url, the CLI's) has params=DATABASES.
        params = getattr(getattr(item, "callspec", None), "params", {})
        found = [value for value in params.values() if isinstance(value, str) and value in DATABASES]
        if found:
            # On the report too, which pytest-xdist carries from a worker to the summary.
            item.user_properties.append(("database", found[0]))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Say which databases the suite ran on (CI's log must show both), and in CI count a
    skipped test as a failed one: CI must never pass by skipping."""
    counts: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        # pytest files only the call phase under "passed"; skips and errors once each.
        for report in terminalreporter.stats.get(outcome, []):
            where = dict(report.user_properties).get("database", "no database")
            counts.setdefault(where, {}).setdefault(outcome, 0)
            counts[where][outcome] += 1
    if counts:
        terminalreporter.write_sep("-", "tests per database")
        for where in [*DATABASES, "no database"]:
            if where in counts:
                outcomes = ", ".join(f"{n} {outcome}" for outcome, n in counts[where].items())
                terminalreporter.write_line(f"{where:<12} {outcomes}")
    skipped = terminalreporter.stats.get("skipped", [])
    if REQUIRE_ALL and skipped:
        terminalreporter.write_line(
            f"APPSERVER_REQUIRE_ALL_TESTS=1: {len(skipped)} skipped test(s) count as failures",
            red=True,
        )
        terminalreporter._session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session", params=DATABASES)
def database_url(request, tmp_path_factory) -> str:
    if request.param == "postgresql":
        return os.environ["TEST_DATABASE_URL"]
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite'}"


@pytest.fixture(scope="session")
def dbengine(database_url: str) -> Iterator[Engine]:
    engine = get_engine({"sqlalchemy.url": database_url})
    reset_database(engine)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def repeated_warnings_logged_afresh() -> None:
    """Each test sees the first warning of each kind (appserver.repeated_warning), whatever
    an earlier test in this process logged."""
    from appserver.repeated_warning import RepeatedWarning

    for limiter in list(RepeatedWarning.instances):
        limiter.reset()


@pytest.fixture(scope="session")
def session_clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def clock(session_clock: FrozenClock) -> FrozenClock:
    """The app's clock, reset for every test: ``clock.advance(seconds)`` moves time."""
    session_clock.current = FrozenClock().current
    return session_clock


@pytest.fixture(scope="session")
def app_settings(database_url: str, dbengine: Engine, session_clock: FrozenClock) -> dict[str, Any]:
    settings = base_settings(database_url)
    settings["appserver.dbengine"] = dbengine
    settings["appserver.clock"] = session_clock
    settings["appserver.password_context"] = CHEAP_PASSWORDS
    return settings


@pytest.fixture(scope="session")
def app(app_settings: dict[str, Any]):
    return appserver.main({}, **app_settings)


@pytest.fixture
def connection(dbengine: Engine) -> Iterator[Connection]:
    """One connection and transaction per test, rolled back at the end."""
    with dbengine.connect() as connection:
        transaction = connection.begin()
        yield connection
        transaction.rollback()


def bind_app(app, connection: Connection) -> None:
    """Make the app's sessions (the request's and its units of work) join ``connection``:
    their commits become savepoints."""
    for factory in ("dbsession_factory", "unit_session_factory"):
        app.registry[factory].configure(bind=connection, join_transaction_mode="create_savepoint")


@pytest.fixture
def testapp(app, connection: Connection, clock: FrozenClock) -> webtest.TestApp:
    bind_app(app, connection)
    return webtest.TestApp(app, extra_environ={"HTTP_HOST": "localhost", "REMOTE_ADDR": "127.0.0.1"})


@pytest.fixture
def make_app(app_settings: dict[str, Any], connection: Connection, clock: FrozenClock):
    """Build another app with some settings changed, bound to this test's transaction."""

    def make(**overrides: str) -> webtest.TestApp:
        other = appserver.main({}, **{**app_settings, **overrides})
        bind_app(other, connection)
        return webtest.TestApp(other, extra_environ={"HTTP_HOST": "localhost", "REMOTE_ADDR": "127.0.0.1"})

    return make


@pytest.fixture
def app_request(app, connection: Connection, clock: FrozenClock) -> Iterator[Any]:
    """A request of the app (``request.dbsession``, ``request.passwords`` ...) inside this
    test's transaction, for arranging data."""
    from pyramid.scripting import prepare

    bind_app(app, connection)
    env = prepare(registry=app.registry)
    request = env["request"]
    request.tm.begin()
    yield request
    request.tm.commit()
    env["closer"]()


@pytest.fixture
def dbsession(app_request):
    return app_request.dbsession


@pytest.fixture
def users(app_request) -> dict[str, Any]:
    """fred (user), alice (user), admin (administrator); password is '<name>-password'."""
    from .support import create_user

    made = {
        "fred": create_user(app_request, "fred", "fred-password", display_name="Fred Developer"),
        "alice": create_user(app_request, "alice", "alice-password", display_name="Alice Tester"),
        "admin": create_user(app_request, "admin", "admin-password", admin=True),
    }
    app_request.dbsession.flush()
    return made


@pytest.fixture
def fred_cookie(testapp, users) -> dict[str, str]:
    """The Cookie header of a session fred logged in to over REST."""
    token = testapp.post_json(
        "/rest/auth/1/session", {"username": "fred", "password": "fred-password"}
    ).json["session"]["value"]
    testapp.reset()
    return {"Cookie": f"appserver.session={token}"}


class StatementCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, conn, cursor, statement, parameters, context, executemany) -> None:
        keyword = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
        if keyword in {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH"}:
            self.statements.append(statement)

    def reset(self) -> None:
        self.statements.clear()

    def __len__(self) -> int:
        return len(self.statements)


@pytest.fixture
def count_statements(dbengine: Engine) -> Iterator[StatementCounter]:
    """Counts SELECT/INSERT/UPDATE/DELETE statements (not BEGIN/SAVEPOINT) on the engine."""
    counter = StatementCounter()
    event.listen(dbengine, "before_cursor_execute", counter)
    yield counter
    event.remove(dbengine, "before_cursor_execute", counter)


@pytest.fixture(scope="module")
def live_server_factory(live_database_url: str):
    """Start waitress servers on loopback ports, sharing this module's live database."""
    servers = []
    database = live_database_url

    def start(**overrides: Any):
        server = start_live_server(database, **overrides)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
        server.engine.dispose()


@pytest.fixture(scope="module", params=DATABASES)
def live_database_url(request, tmp_path_factory) -> Iterator[str]:
    """A database for live servers (they commit for real), emptied afterwards."""
    if request.param == "postgresql":
        url = sibling_database(os.environ["TEST_DATABASE_URL"], "live")
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('live') / 'live.sqlite'}"
    yield fresh_database(url)
    engine = get_engine({"sqlalchemy.url": url})
    reset_database(engine)
    engine.dispose()
