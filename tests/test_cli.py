"""The command line (``appserver CONFIG COMMAND``), settings validation, and production.ini
served for real by ``pserve`` (issue 2: command line, configuration, serving; acceptance 7).
"""
from __future__ import annotations

import base64
import io
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import webtest
from sqlalchemy import func, select, text, update

import appserver
from appserver.models import AuthEvent, User, UserSession, get_engine
from appserver import startup
from appserver.scripts import cli
from appserver.settings import ConfigurationError, parse_settings

from .conftest import DATABASES
from .support import ROOT, SECRET, base_settings, migrate, production_environment, reset_database, sibling_database

#: The console scripts of the environment running the tests (make test: .venv/bin).
BIN = Path(sys.executable).parent

INI = """\
[app:main]
use = egg:appserver
sqlalchemy.url = {url}
appserver.secret = {secret}
appserver.session.secure = false

[alembic]
script_location = {migrations}

[loggers]
keys = root

[handlers]
keys = null

[formatters]
keys =

[logger_root]
level = WARN
handlers = null

[handler_null]
class = NullHandler
args = ()
"""


@pytest.fixture(autouse=True)
def keep_logging_as_it_was() -> Iterator[None]:
    """The CLI configures logging from the ini file (as it should); undo that for the tests
    that follow."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in ("appserver", "sqlalchemy.engine", "alembic")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)


@pytest.fixture(params=DATABASES)
def database(request, tmp_path) -> Iterator[str]:
    """A scratch database for the commands (they commit for real)."""
    if request.param == "postgresql":
        url = sibling_database(os.environ["TEST_DATABASE_URL"], "cli")
    else:
        url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    engine = get_engine({"sqlalchemy.url": url})
    reset_database(engine)
    engine.dispose()
    yield url
    engine = get_engine({"sqlalchemy.url": url})
    reset_database(engine)
    engine.dispose()


@pytest.fixture
def ini(tmp_path: Path, database: str) -> str:
    path = tmp_path / "app.ini"
    path.write_text(INI.format(url=database, secret=SECRET, migrations=ROOT / "migrations"))
    return str(path)


def run(ini: str, *args: str, stdin: str = "", monkeypatch=None) -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))  # not a terminal: read one line
    return cli.main([ini, *args])


@pytest.fixture
def appserver_cli(ini, monkeypatch, capsys):
    """``appserver_cli(args..., stdin=...)`` -> (exit status, stdout, stderr)."""

    def call(*args: str, stdin: str = "") -> tuple[int, str, str]:
        status = run(ini, *args, stdin=stdin, monkeypatch=monkeypatch)
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return call


@pytest.fixture
def web(ini) -> Iterator[webtest.TestApp]:
    """The app the ini describes, to see what the commands did."""
    from pyramid.paster import get_app

    app = get_app(ini)
    yield webtest.TestApp(app, extra_environ={"HTTP_HOST": "localhost"})
    app.registry.dbengine.dispose()


def count(ini_app: webtest.TestApp, model) -> int:
    engine = ini_app.app.registry.dbengine
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(model)).scalar_one()


def rest_login(web: webtest.TestApp, username: str, password: str, status: int = 200):
    return web.post_json("/rest/auth/1/session", {"username": username, "password": password}, status=status)


# --- initdb ----------------------------------------------------------------------------------


def test_two_initdb_at_once_both_succeed(ini, database):
    """Several machines of one deployment run `initdb` as they start: on PostgreSQL the
    second created the same tables again and died on a duplicate (a traceback), on SQLite it
    found the database locked. It now waits for the first (PostgreSQL: an advisory lock
    around the migrations; SQLite: the write lock from BEGIN) and finds the database at head."""
    command = [str(BIN / "appserver"), ini, "initdb"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert all("database migrated to the latest revision" in output for output in outputs)


def test_initdb_migrates_an_empty_database(appserver_cli, ini, database):
    status, out, _ = appserver_cli("initdb")
    assert status == 0
    assert "database migrated to the latest revision" in out
    engine = get_engine({"sqlalchemy.url": database})
    from sqlalchemy import inspect

    assert {"users", "sessions", "alembic_version"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def _set_revision(database: str, revision: str) -> None:
    engine = get_engine({"sqlalchemy.url": database})
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
    engine.dispose()


def test_a_database_a_newer_release_migrated_serves_this_release_s_commands(appserver_cli, web, database):
    """After a rollback, or on a machine not upgraded yet, the database is at a revision this
    code does not know. Its servers go on serving (migrations only add), and so do its
    commands now: they refused with "run initdb", and initdb died on a traceback (an outside
    review). initdb alone refuses, in one line: it cannot go back."""
    appserver_cli("initdb", "--demo")
    token = rest_login(web, "fred", "fred-password").json["session"]["value"]
    _set_revision(database, "9999_next_release")
    status, out, err = appserver_cli("revoke-sessions", "fred")
    assert (status, err) == (0, ""), err
    web.get("/rest/api/2/myself", headers={"Cookie": f"appserver.session={token}"}, status=401)
    status, out, err = appserver_cli("initdb")
    head = startup.head_revision(ROOT / "development.ini")
    assert status == 1 and out == "" and err == (
        "appserver: error: the database is at revision 9999_next_release, which this code does not "
        f"know: a newer release migrated it (this one goes up to {head}). Nothing was changed; run that "
        "release's initdb. This release's servers and commands keep working with it (docs/deployment.md, "
        '"Rolling back a release")\n')


def test_a_server_started_before_initdb_answers_503_not_500(appserver_cli, ini, database, caplog):
    """A process of the new release on a database of the old one (restarted before initdb):
    on PostgreSQL a missing column is a ProgrammingError, which was a 500 with a traceback
    per request, 100,000 log lines in 25 s (an outside review); SQLite's is an
    OperationalError, a 503 already. Now both are the database's state: 503, Retry-After,
    one rate-limited line saying what to run."""
    engine = get_engine({"sqlalchemy.url": database})
    migrate(engine, "0006")  # before sessions.replaced_by_id (0007) and the hourly failures (0008)
    engine.dispose()
    from pyramid.paster import get_app

    app = webtest.TestApp(get_app(ini), extra_environ={"HTTP_HOST": "localhost"})
    cookie = {"Cookie": "appserver.session=" + "A" * 43}
    basic = {"Authorization": "Basic " + base64.b64encode(b"fred:fred-password").decode()}
    try:
        for path, headers in (("/rest/api/2/myself", cookie), ("/rest/api/2/myself", basic), ("/issues", cookie)):
            answer = app.get(path, headers=headers, status=503)
            assert answer.headers["Retry-After"], path
        assert answer.content_type == "text/html"
        rest = app.get("/rest/api/2/myself", headers=basic, status=503)
        assert rest.json["errors"] == {} and rest.json["errorMessages"]
        assert "unhandled error" not in caplog.text
        assert "run 'appserver CONFIG initdb'" in caplog.text
    finally:
        app.app.registry.dbengine.dispose()


def test_initdb_demo_twice_is_idempotent(appserver_cli, ini):
    status, first, _ = appserver_cli("initdb", "--demo")
    assert status == 0
    assert "demo user 'fred': created" in first
    status, second, _ = appserver_cli("initdb", "--demo")
    assert status == 0
    assert "demo user 'fred': already there" in second
    assert "demo user 'admin': already there" in second
    from pyramid.paster import get_app

    app = get_app(ini)
    web = webtest.TestApp(app)
    assert count(web, User) == 3
    for username in ("admin", "fred", "alice"):
        assert rest_login(web, username, f"{username}-password").json["loginInfo"]["loginCount"] == 1
    app.registry.dbengine.dispose()


# --- create-user -----------------------------------------------------------------------------


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--email", "not an address", "invalid --email: Enter an email address like name@example.com"),
    ("--email", "a@b@c", "invalid --email"),
    ("--email", "@example.com", "invalid --email"),
    ("--email", "x@" + "e" * 260 + ".com", "(at most 255 characters)"),
    ("--display-name", "D" * 256, "invalid --display-name: Display names are limited to 255 characters."),
    ("--display-name", "tab\there", "invalid --display-name: Display names cannot contain control characters."),
])
def test_create_user_refuses_a_bad_profile_and_creates_nobody(appserver_cli, option, value, says):
    appserver_cli("initdb")
    status, out, err = appserver_cli("create-user", "dora", option, value, stdin="never read\n")
    assert status == 1 and out == "" and err.startswith("appserver: error: ") and says in err, err
    assert appserver_cli("create-user", "dora", stdin="dora's pass phrase\n")[:2] == (0, "created user 'dora'\n")


def test_create_user_reads_the_password_from_stdin(appserver_cli, ini):
    appserver_cli("initdb")
    status, out, err = appserver_cli(
        "create-user", "carol", "--display-name", "Carol C", "--email", "carol@example.com",
        stdin="carol's pass phrase\n",
    )
    assert (status, err) == (0, "")
    assert "created user 'carol'" in out
    from pyramid.paster import get_app

    app = get_app(ini)
    web = webtest.TestApp(app)
    rest_login(web, "carol", "carol's pass phrase")
    me = web.get("/rest/api/2/myself").json
    assert (me["displayName"], me["emailAddress"], me["name"]) == ("Carol C", "carol@example.com", "carol")
    app.registry.dbengine.dispose()


def test_create_admin(appserver_cli, ini):
    appserver_cli("initdb")
    status, out, _ = appserver_cli("create-user", "root2", "--admin", stdin="admin pass phrase\n")
    assert status == 0 and "(administrator)" in out


def test_a_duplicate_user_is_refused(appserver_cli):
    appserver_cli("initdb", "--demo")
    status, out, err = appserver_cli("create-user", "FRED", stdin="another password\n")
    assert status == 1
    assert "appserver: error: user 'FRED' already exists" in err
    assert "created" not in out


@pytest.mark.parametrize("stdin", ["", "\n", "\r\n"])
def test_an_empty_password_is_refused(appserver_cli, ini, stdin):
    appserver_cli("initdb")
    status, _, err = appserver_cli("create-user", "dave", stdin=stdin)
    assert status == 1
    assert "the password must not be empty" in err
    from pyramid.paster import get_app

    app = get_app(ini)
    assert count(webtest.TestApp(app), User) == 0
    app.registry.dbengine.dispose()


def test_a_password_over_the_size_cap_is_refused(appserver_cli):
    appserver_cli("initdb")
    status, _, err = appserver_cli("create-user", "erin", stdin="x" * 2000 + "\n")
    assert status == 1 and "1024 bytes" in err


@pytest.mark.parametrize(
    "username", ["", "   ", "bad\x01name", "x" * 256, "bad name!", ".fred", "user€", "a/b", "fred\u200b", "fred\u034f", "\u3164fred"]
)
def test_an_invalid_username_is_refused(appserver_cli, username):
    appserver_cli("initdb")
    status, _, err = appserver_cli("create-user", username, stdin="a fine password\n")
    assert status == 1 and "invalid username" in err
    assert "letters, digits and the symbols . _ - @ +" in err


@pytest.mark.parametrize("username", ["用户", "fred.smith@example.com", "fred_2", "zoë-1"])
def test_usernames_of_any_script_are_accepted(appserver_cli, web, username):
    appserver_cli("initdb")
    status, out, err = appserver_cli("create-user", username, stdin="a fine password\n")
    assert status == 0, err
    assert rest_login(web, username, "a fine password").headers["X-AUSERNAME"] == quote(username, safe="@")


@pytest.mark.parametrize("password", ["x", "seven77", "tab\there-and-more"])
def test_the_password_rule_applies_to_create_user_and_set_password(appserver_cli, web, password):
    """One rule for every way a password is set: the account page's, here too."""
    appserver_cli("initdb", "--demo")
    status, _, err = appserver_cli("create-user", "dave", stdin=password + "\n")
    assert status == 1 and "appserver: error:" in err
    status, _, err = appserver_cli("set-password", "fred", stdin=password + "\n")
    assert status == 1 and "appserver: error:" in err
    rest_login(web, "fred", "fred-password")  # unchanged
    rest_login(web, "dave", password, status=401)


def test_on_a_terminal_the_password_is_prompted_twice():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter(["first", "second"])
    with pytest.raises(cli.CommandError, match="do not match"):
        cli.read_password(Terminal(), prompt=lambda _: next(answers))
    same = iter(["same pass", "same pass"])
    assert cli.read_password(Terminal(), prompt=lambda _: next(same)) == "same pass"


# --- set-password, revoke-sessions, purge-sessions -------------------------------------------


@pytest.mark.parametrize(
    "command", [["set-password", "nobody"], ["revoke-sessions", "nobody"], ["unlock", "nobody"]]
)
def test_commands_on_an_unknown_user_fail(appserver_cli, command):
    appserver_cli("initdb", "--demo")
    status, out, err = appserver_cli(*command, stdin="a new password\n")
    assert status == 1
    assert "appserver: error: no user named 'nobody'" in err
    assert out == ""


def test_set_password_revokes_the_users_sessions(appserver_cli, web):
    appserver_cli("initdb", "--demo")
    token = rest_login(web, "fred", "fred-password").json["session"]["value"]
    alice = rest_login(webtest.TestApp(web.app), "alice", "alice-password").json["session"]["value"]

    status, out, _ = appserver_cli("set-password", "fred", stdin="fred's new password\n")
    assert status == 0 and "password changed for 'fred'; 1 session(s) revoked" in out

    web.reset()
    web.get("/rest/api/2/myself", headers={"Cookie": f"appserver.session={token}"}, status=401)
    web.get("/rest/api/2/myself", headers={"Cookie": f"appserver.session={alice}"}, status=200)
    rest_login(web, "fred", "fred-password", status=401)
    rest_login(web, "fred", "fred's new password")


def test_set_password_with_an_empty_password_changes_nothing(appserver_cli, web):
    appserver_cli("initdb", "--demo")
    status, _, err = appserver_cli("set-password", "fred", stdin="\n")
    assert status == 1 and "must not be empty" in err
    rest_login(web, "fred", "fred-password")


def test_revoke_sessions_logs_the_user_out_everywhere(appserver_cli, web):
    appserver_cli("initdb", "--demo")
    tokens = [rest_login(webtest.TestApp(web.app), "fred", "fred-password").json["session"]["value"] for _ in range(2)]
    status, out, _ = appserver_cli("revoke-sessions", "fred")
    assert status == 0 and "2 session(s) of 'fred' revoked" in out
    for token in tokens:
        web.get("/rest/api/2/myself", headers={"Cookie": f"appserver.session={token}"}, status=401)
    rest_login(web, "fred", "fred-password")  # the password still works


def test_create_token_prints_only_the_token_which_then_works(appserver_cli, web):
    appserver_cli("initdb", "--demo")
    status, out, err = appserver_cli("create-token", "fred", "CI pipeline", "--expires-days", "30")
    assert status == 0 and err == ""
    (token,) = out.splitlines()  # nothing else: `TOKEN=$(appserver ... create-token ...)` works
    assert token.startswith("apt_") and out == token + "\n"
    me = web.get("/rest/api/2/myself", headers={"Authorization": f"Bearer {token}"})
    assert me.json["name"] == "fred" and "Set-Cookie" not in me.headers
    listed = web.get("/rest/pat/latest/tokens", headers={"Authorization": f"Bearer {token}"}).json
    assert [t["name"] for t in listed] == ["CI pipeline"]
    created, expiring = (datetime.strptime(listed[0][k], "%Y-%m-%dT%H:%M:%S.%f%z") for k in ("createdAt", "expiringAt"))
    assert expiring - created == timedelta(days=30)


@pytest.mark.parametrize(
    "args, message",
    [
        (("create-token", "fred", "no expiry"),
         "appserver: error: give --expires-days N (1 to 365): tokens without an expiry date are not allowed"),
        (("create-token", "fred", "x", "--expires-days", "366"),
         "appserver: error: --expires-days 366: give a whole number of days from 1 to 365\n"),
        (("create-token", "fred", ""), "Give the token a name"),
        (("create-token", "nobody", "x", "--expires-days", "1"), "no user named 'nobody'"),
        (("revoke-tokens", "nobody"), "no user named 'nobody'"),
    ],
)
def test_create_token_errors_are_clear(appserver_cli, web, args, message):
    appserver_cli("initdb", "--demo")
    status, out, err = appserver_cli(*args)
    assert status == 1 and out == "" and message in err


def test_revoke_tokens_and_revoke_sessions_stop_tokens_at_once(appserver_cli, web):
    appserver_cli("initdb", "--demo")
    tokens = [appserver_cli("create-token", "fred", f"t{n}", "--expires-days", "5")[1].strip() for n in range(3)]
    status, out, _ = appserver_cli("revoke-tokens", "fred")
    assert status == 0 and "3 personal access token(s) of 'fred' revoked" in out
    for token in tokens:
        web.get("/rest/api/2/myself", headers={"Authorization": f"Bearer {token}"}, status=401)
    token = appserver_cli("create-token", "fred", "again", "--expires-days", "5")[1].strip()
    web.get("/rest/api/2/myself", headers={"Authorization": f"Bearer {token}"}, status=200)
    status, out, _ = appserver_cli("revoke-sessions", "fred")  # "log out everywhere"
    assert status == 0 and "personal access tokens revoked" in out
    web.get("/rest/api/2/myself", headers={"Authorization": f"Bearer {token}"}, status=401)


def test_unlock_ends_a_lock_out_at_once(appserver_cli, web):
    appserver_cli("initdb", "--demo")
    for attempt in range(3):
        rest_login(web, "alice", f"wrong-{attempt}", status=401)
    denied = rest_login(web, "alice", "alice-password", status=403)
    assert denied.headers["X-Seraph-LoginReason"] == "AUTHENTICATION_DENIED"

    status, out, _ = appserver_cli("unlock", "alice")
    assert status == 0 and "'alice' unlocked" in out
    # The total of failed logins is kept (loginInfo shows it); the current count starts again.
    assert rest_login(web, "alice", "alice-password").json["loginInfo"]["failedLoginCount"] == 3


def test_a_command_beside_a_writing_server_waits_its_turn_and_unlocks(appserver_cli, web, database, monkeypatch):
    """The server writes (here: the failure that locks alice) between the command's first
    query and its own write. On SQLite the command's transaction now holds the write lock
    from its first query, so the server waits (was: the command failed at once, "database
    is locked"); on PostgreSQL the write lands first. Either way the command succeeds and
    its unlock clears the lock that came after it read the account (was: only the columns
    it saw change were written, and the lock stayed under "unlocked")."""
    import sqlalchemy as sa

    from appserver.models import get_engine
    from appserver.security import accounts

    appserver_cli("initdb", "--demo")
    server = get_engine({"sqlalchemy.url": database})
    real, refused = accounts.unlock, []

    def the_server_writes_meanwhile(request, user, **kwargs):
        try:
            with server.connect() as connection:
                if server.dialect.name == "sqlite":
                    connection.exec_driver_sql("PRAGMA busy_timeout = 0")
                connection.execute(
                    sa.update(User).where(User.username == "alice")
                    .values(current_failed_logins=3, locked_until=datetime.now(timezone.utc) + timedelta(hours=1))
                )
                connection.commit()
        except sa.exc.OperationalError as error:
            refused.append(str(error.orig))
        return real(request, user, **kwargs)

    monkeypatch.setattr(accounts, "unlock", the_server_writes_meanwhile)
    try:
        status, out, err = appserver_cli("unlock", "alice")
    finally:
        server.dispose()
    assert status == 0, err
    if database.startswith("sqlite"):
        assert refused and "locked" in refused[0]  # the server's write had to wait
    else:
        assert not refused
    assert rest_login(web, "alice", "alice-password").status_int == 200


def test_purge_sessions_deletes_dead_sessions_and_keeps_live_ones(appserver_cli, web):
    appserver_cli("initdb", "--demo")
    live = rest_login(webtest.TestApp(web.app), "alice", "alice-password").json["session"]["value"]
    for _ in range(3):  # three logins and logouts: three revoked rows
        client = webtest.TestApp(web.app)
        rest_login(client, "fred", "fred-password")
        client.delete("/rest/auth/1/session", status=204)
    assert count(web, UserSession) == 4

    status, out, _ = appserver_cli("purge-sessions", "--batch-size", "2")
    assert status == 0
    assert "3 expired or revoked session(s) purged" in out
    assert count(web, UserSession) == 1
    web.get("/rest/api/2/myself", headers={"Cookie": f"appserver.session={live}"}, status=200)

    status, out, _ = appserver_cli("purge-sessions")
    assert "0 expired or revoked session(s) purged" in out


def test_purge_sessions_runs_a_batch_again_after_a_transient_error(appserver_cli, web, monkeypatch):
    """A batch that met a deadlock or a busy database after its DELETE is rolled back; it
    runs again over the same rows, and the purge goes on to the end."""
    from appserver.security.sessions import SessionStore

    from .test_concurrency import locked_error

    appserver_cli("initdb", "--demo")
    for _ in range(5):  # five logins and logouts: five revoked rows
        client = webtest.TestApp(web.app)
        rest_login(client, "fred", "fred-password")
        client.delete("/rest/auth/1/session", status=204)
    real, calls = SessionStore.purge_batch, []

    def fails_once(store, batch_size, *, after=0):
        result = real(store, batch_size, after=after)  # deleted, in the transaction
        calls.append(after)
        if len(calls) == 2:
            raise locked_error()
        return result

    monkeypatch.setattr(SessionStore, "purge_batch", fails_once)
    status, out, _ = appserver_cli("purge-sessions", "--batch-size", "2")
    assert status == 0, out
    assert "5 expired or revoked session(s) purged" in out
    assert calls[1] == calls[2], "the failed batch ran again from where it started"
    assert count(web, UserSession) == 0


def test_purge_events_deletes_events_older_than_the_retention(appserver_cli, web, ini):
    appserver_cli("initdb", "--demo")
    for attempt in range(3):
        rest_login(web, "fred", f"wrong-{attempt}", status=401)
    engine = web.app.registry.dbengine
    with engine.begin() as connection:
        old = datetime.now(timezone.utc) - timedelta(days=91)
        ids = connection.execute(select(AuthEvent.id).order_by(AuthEvent.id)).scalars().all()
        connection.execute(update(AuthEvent).where(AuthEvent.id.in_(ids[:3])).values(occurred_at=old))
    before = count(web, AuthEvent)

    status, out, _ = appserver_cli("purge-events", "--batch-size", "2")
    assert status == 0 and "3 audit event(s) older than 90 days purged" in out
    assert count(web, AuthEvent) == before - 3
    status, out, _ = appserver_cli("purge-events")
    assert "0 audit event(s)" in out


def test_batch_sizes_must_be_positive(appserver_cli):
    with pytest.raises(SystemExit):
        appserver_cli("purge-events", "--batch-size", "0")


def test_purge_sessions_deletes_revoked_tokens_and_keeps_usable_ones(appserver_cli, web):
    from appserver.models import PersonalToken

    appserver_cli("initdb", "--demo")
    for n in range(3):
        appserver_cli("create-token", "fred", f"old{n}", "--expires-days", "5")
    appserver_cli("revoke-tokens", "fred")
    keep = appserver_cli("create-token", "fred", "keep", "--expires-days", "5")[1].strip()
    status, out, _ = appserver_cli("purge-sessions", "--batch-size", "2")
    assert status == 0 and "3 expired or revoked personal access token(s) purged" in out
    assert count(web, PersonalToken) == 1
    web.get("/rest/api/2/myself", headers={"Authorization": f"Bearer {keep}"}, status=200)


# --- Settings: a bad value stops start-up, naming the setting ---------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("appserver.session.idle_timeout", "abc"),
        ("appserver.session.idle_timeout", "0"),
        ("appserver.session.max_age", "12h"),
        ("appserver.session.touch_interval", "-1"),
        ("appserver.session.secure", "maybe"),
        ("appserver.session.cookie_name", "my session"),
        ("appserver.rest_prefix", "rest"),
        ("appserver.rest_cookie_rule", "sometimes"),
        ("appserver.os_authtype", "2"),
        ("appserver.basic_realm", "  "),
        ("appserver.login.max_failures", "three"),
        ("appserver.secret", "too-short"),
        ("appserver.secret", "CHANGE-ME-to-48-random-url-safe-characters-from-the-command-above"),
        ("appserver.secret", "a" * 48),
        ("appserver.secret", "passwordpasswordpasswordpassword"),
    ],
)
def test_an_invalid_setting_stops_start_up_naming_it(name, value):
    settings = base_settings("sqlite://", **{name: value})
    with pytest.raises(ConfigurationError) as raised:
        appserver.main({}, **settings)
    assert str(raised.value).startswith(name)
    assert value.strip() in str(raised.value) or "must" in str(raised.value)


@pytest.mark.parametrize(("contradiction", "message"), [
    ({"appserver.session.idle_timeout": "60", "appserver.session.touch_interval": "60"},
     "appserver.session.touch_interval: must be shorter than appserver.session.idle_timeout "
     "(60 >= 60); a tenth of it or less keeps the idle timeout exact to 10 %, e.g. 6"),
    ({"appserver.login.lockout_seconds": "120", "appserver.login.max_lockout_seconds": "60"},
     "appserver.login.max_lockout_seconds: must not be shorter than appserver.login.lockout_seconds "
     "(60 < 120): set it to 120 or more"),
])
def test_settings_that_contradict_each_other_are_refused(contradiction, message):
    """Each says by how much, and what to set."""
    with pytest.raises(ConfigurationError) as raised:
        parse_settings(base_settings("sqlite://", **contradiction))
    assert str(raised.value) == message


def test_a_missing_secret_refuses_with_a_clear_message(monkeypatch):
    monkeypatch.delenv("APPSERVER_SECRET", raising=False)
    settings = base_settings("sqlite://")
    del settings["appserver.secret"]
    with pytest.raises(ConfigurationError) as raised:
        appserver.main({}, **settings)
    assert str(raised.value) == (
        "appserver.secret is not set: set the APPSERVER_SECRET environment variable (at least 32 characters)"
    )


def test_a_missing_database_url_refuses_with_a_clear_message(monkeypatch):
    monkeypatch.delenv("APPSERVER_DATABASE_URL", raising=False)
    settings = base_settings("sqlite://")
    del settings["sqlalchemy.url"]
    with pytest.raises(ConfigurationError, match="sqlalchemy.url is not set.*APPSERVER_DATABASE_URL"):
        appserver.main({}, **settings)


def test_the_environment_overrides_the_ini(monkeypatch):
    monkeypatch.setenv("APPSERVER_SECRET", SECRET + "-from-the-environment")
    monkeypatch.setenv("APPSERVER_DATABASE_URL", "sqlite://")
    settings = base_settings("postgresql+psycopg://nowhere/none")
    del settings["appserver.secret"]
    app = appserver.main({}, **settings)
    assert app.registry.appserver_settings.secret == SECRET + "-from-the-environment"
    assert str(app.registry.dbengine.url) == "sqlite://"


def test_the_defaults(monkeypatch):
    parsed = parse_settings({"appserver.secret": SECRET, "sqlalchemy.url": "sqlite://"})
    assert (parsed.idle_timeout, parsed.max_age, parsed.touch_interval) == (1800, 43200, 60)
    assert parsed.cookie_name == "appserver.session"
    assert parsed.secure_cookies is True and parsed.session_cookie == "__Host-appserver.session"
    assert parsed.rest_prefix == "/rest" and parsed.rest_cookie_rule and parsed.os_authtype


def test_development_ini_is_plain_http_and_production_ini_is_secure():
    from plaster import get_loader

    development = get_loader(str(ROOT / "development.ini"), protocols=["wsgi"])
    production = get_loader(str(ROOT / "production.ini"), protocols=["wsgi"])
    assert development.get_settings("app:main")["appserver.session.secure"] == "false"
    assert development.get_settings("server:main")["listen"] == "127.0.0.1:6543"
    assert production.get_settings("app:main")["appserver.session.secure"] == "true"
    assert production.get_settings("server:main")["listen"] == "127.0.0.1:8080"
    # production.ini holds no secret and no database: they come from the environment.
    assert "appserver.secret" not in production.get_settings("app:main")
    assert "sqlalchemy.url" not in production.get_settings("app:main")


# --- production.ini, served for real ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(params=DATABASES)
def production_env(request, tmp_path) -> dict[str, str]:
    """The environment production.ini documents: APPSERVER_SECRET, APPSERVER_DATABASE_URL,
    APPSERVER_ALLOWED_HOSTS (here also the name the proxy test forwards)."""
    env = production_environment(request.param, tmp_path / "production.sqlite", "production", SECRET)
    env["APPSERVER_ALLOWED_HOSTS"] = "127.0.0.1 jira.example.com"
    return env


def production_ini_on(port: int, tmp_path: Path) -> Path:
    """production.ini as it is, but listening on ``port``: its app and its server section
    are used unchanged, only ``listen`` (127.0.0.1:8080 there) is replaced, so parallel
    test runs never fight over one port."""
    production = ROOT / "production.ini"
    path = tmp_path / "production-on-a-free-port.ini"
    path.write_text(
        f"[app:main]\nuse = config:{production}#main\n\n"
        f"[server:main]\nuse = config:{production}#main\nlisten = 127.0.0.1:{port}\n"
    )
    return path


def wait_until_served(process: subprocess.Popen, url: str, timeout: float = 30) -> requests.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"pserve exited with {process.returncode}: {process.stderr.read()}")
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            time.sleep(0.1)  # waiting for a process to start listening, not for time to pass
    raise AssertionError(f"{url} did not answer within {timeout} s")


@contextmanager
def pserve_production(production_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """``pserve production.ini`` in its own OS process on a free port; yields its base URL."""
    port = free_port()
    folder = tmp_path / f"pserve-{port}"
    folder.mkdir()
    process = subprocess.Popen(
        [str(BIN / "pserve"), str(production_ini_on(port, folder))],
        cwd=folder, env=production_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_served(process, base + "/rest/api/2/serverInfo")
        yield base
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_pserve_production_ini_serves_with_the_environment(production_env, tmp_path):
    initdb = subprocess.run(
        [str(BIN / "appserver"), "production.ini", "initdb", "--demo"],
        cwd=ROOT, env=production_env, capture_output=True, text=True, timeout=120,
    )
    assert initdb.returncode == 0, initdb.stderr
    assert "demo user 'fred': created" in initdb.stdout

    with pserve_production(production_env, tmp_path) as base:
        info = requests.get(base + "/rest/api/2/serverInfo", timeout=10)
        assert info.status_code == 200 and info.json()["deploymentType"] == "Server"
        assert info.headers["Server"] == "waitress"
        login = requests.post(base + "/rest/auth/1/session", timeout=10,
                              json={"username": "fred", "password": "fred-password"})
        assert login.status_code == 200
        assert login.json()["session"]["name"] == "__Host-appserver.session"
        cookie = login.headers["Set-Cookie"].lower()
        assert cookie.startswith("__host-appserver.session=") and "; secure" in cookie
        # Behind its https proxy the browser sends the cookie back; here we do it by hand.
        token = login.json()["session"]["value"]
        me = requests.get(base + "/rest/api/2/myself", timeout=10,
                          headers={"Cookie": f"__Host-appserver.session={token}"})
        assert me.json()["name"] == "fred"
        # waitress refuses an oversized body itself, chunked or not, before the app reads it.
        too_big = iter([b"x" * 65536] * 20)  # 1.25 MiB, sent chunked (no Content-Length)
        refused = requests.post(base + "/rest/auth/1/session", data=too_big, timeout=10,
                                headers={"Content-Type": "application/json"})
        assert refused.status_code == 413

        # Behind its proxy (trusted_proxy = 127.0.0.1), X-Forwarded-Host names the site: an
        # allowed one builds every URL, any other is a 400 before anything is built from it.
        proxied = requests.get(base + "/rest/api/2/serverInfo", timeout=10, headers={
            "X-Forwarded-Host": "jira.example.com", "X-Forwarded-Proto": "https"})
        assert proxied.json()["baseUrl"] == "https://jira.example.com"
        assert proxied.headers["Strict-Transport-Security"] == "max-age=31536000"
        for headers in ({"X-Forwarded-Host": "evil.example"}, {"Host": "evil.example"},
                        {"Host": "evil.example:80@127.0.0.1"}):
            foreign = requests.get(base + "/login", timeout=10, headers=headers, allow_redirects=False)
            assert foreign.status_code == 400, headers
            assert "evil.example" not in foreign.text and "Location" not in foreign.headers


def test_two_pserve_processes_share_lockouts_sessions_and_password_changes(production_env, tmp_path):
    """Several processes on one database (PostgreSQL in production): nothing that decides who
    is logged in lives in a process's memory."""
    initdb = subprocess.run(
        [str(BIN / "appserver"), "production.ini", "initdb", "--demo"],
        cwd=ROOT, env=production_env, capture_output=True, text=True, timeout=120,
    )
    assert initdb.returncode == 0, initdb.stderr
    session = "/rest/auth/1/session"
    with pserve_production(production_env, tmp_path) as one, pserve_production(production_env, tmp_path) as two:
        assert one != two

        # Failed logins through either process (form-less REST and Basic) count towards one lock-out.
        wrong = {"username": "alice", "password": "wrong"}
        assert requests.post(one + session, json=wrong, timeout=10).status_code == 401
        assert requests.get(two + "/rest/api/2/myself", auth=("alice", "wrong"), timeout=10).status_code == 401
        assert requests.post(one + session, json=wrong, timeout=10).status_code == 401
        denied = requests.post(two + session, json={"username": "alice", "password": "alice-password"}, timeout=10)
        assert denied.status_code == 403
        assert denied.headers["X-Seraph-LoginReason"] == "AUTHENTICATION_DENIED"

        # A session made by one process is live in the other, and a logout in either ends it.
        login = requests.post(one + session, json={"username": "fred", "password": "fred-password"}, timeout=10)
        cookie = {"Cookie": f"__Host-appserver.session={login.json()['session']['value']}"}
        assert requests.get(two + "/rest/api/2/myself", headers=cookie, timeout=10).json()["name"] == "fred"
        assert requests.delete(two + session, headers=cookie, timeout=10).status_code == 204
        assert requests.get(one + "/rest/api/2/myself", headers=cookie, timeout=10).status_code == 401

        # A password changed elsewhere (a third process: the command line) fails Basic at once in both.
        assert requests.get(one + "/rest/api/2/myself", auth=("fred", "fred-password"), timeout=10).ok
        changed = subprocess.run(
            [str(BIN / "appserver"), "production.ini", "set-password", "fred"], input="a new password\n",
            cwd=ROOT, env=production_env, capture_output=True, text=True, timeout=60,
        )
        assert changed.returncode == 0, changed.stderr
        for base in (one, two):
            assert requests.get(base + "/rest/api/2/myself", auth=("fred", "fred-password"), timeout=10).status_code == 401
            assert requests.get(base + "/rest/api/2/myself", auth=("fred", "a new password"), timeout=10).ok


def test_pserve_production_ini_refuses_to_start_without_a_secret(production_env, tmp_path):
    del production_env["APPSERVER_SECRET"]
    result = subprocess.run(
        [str(BIN / "pserve"), "production.ini"],
        cwd=ROOT, env=production_env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "appserver.secret is not set: set the APPSERVER_SECRET environment variable" in result.stderr


def test_pserve_production_ini_refuses_to_start_without_allowed_hosts(production_env):
    del production_env["APPSERVER_ALLOWED_HOSTS"]
    result = subprocess.run(
        [str(BIN / "pserve"), "production.ini"],
        cwd=ROOT, env=production_env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "appserver.allowed_hosts is not set: set the APPSERVER_ALLOWED_HOSTS environment" in result.stderr


def test_pserve_production_ini_refuses_a_short_secret(production_env):
    production_env["APPSERVER_SECRET"] = "short"
    result = subprocess.run(
        [str(BIN / "pserve"), "production.ini"],
        cwd=ROOT, env=production_env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "appserver.secret: must be at least 32 characters long" in result.stderr
