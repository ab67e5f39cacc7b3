"""Start-up mistakes (issue 10, items 12 and 13): a busy port, a missing ini file, a bad or
misspelt setting, a database that is down, missing, empty or behind: each is one line that
says what to do and exit status 1, from ``appserver`` and from ``pserve`` — never a
traceback, never a reloader left waiting. Real processes, as a person runs them.
"""
from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from alembic.script import ScriptDirectory

from appserver import settings as settings_module
from appserver.models import get_engine
from appserver.scripts import cli
from appserver.settings import SCHEMA, ConfigurationError, parse_settings
from appserver.startup import database_problem, safe_url, with_port

from .conftest import DATABASES
from .ini import logging_sections
from .support import ROOT, SECRET, alembic_config, base_settings, migrate
from .test_cli import BIN, database, free_port, wait_until_served  # noqa: F401 (a fixture)

INI = """\
[app:main]
use = egg:appserver
sqlalchemy.url = {url}
appserver.secret = {secret}
appserver.session.secure = false
{extra}

[alembic]
script_location = {migrations}

[server:main]
use = egg:appserver#main
listen = 127.0.0.1:{port}

""" + logging_sections("%(levelname)s %(message)s")

#: pyramid's own import-time deprecation warning (setuptools) is not ours to judge here.
ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("APPSERVER_")},
    "PYTHONWARNINGS": "ignore:pkg_resources is deprecated:UserWarning",
    "PYTHONUNBUFFERED": "1",
}

#: What hupper, pserve's reloader, says about its own work (not ours to change).
RELOADER_LINES = re.compile(r"^(Starting monitor for PID \d+\.|Received SIGTERM.*|Gracefully killing.*)$")

#: The one line for a port that is taken (startup.address_problem).
BUSY = "is in use — is another server running? Another port: make run PORT=N, or pserve CONFIG http_port=N"


def write_ini(folder: Path, url: str, *, port: int | None = None, extra: str = "") -> Path:
    path = folder / "app.ini"
    path.write_text(
        INI.format(
            url=url, secret=SECRET, migrations=ROOT / "migrations", port=port or free_port(), extra=extra
        )
    )
    return path


def run(*command: str, cwd: Path, timeout: float = 60, env: dict | None = None) -> tuple[int, list[str]]:
    """Exit status and every line the command printed (stdout and stderr together)."""
    done = subprocess.run(
        list(command), cwd=cwd, env=ENV if env is None else env, capture_output=True, text=True, timeout=timeout
    )
    return done.returncode, (done.stdout + done.stderr).splitlines()


def assert_one_line(status: int, lines: list[str], expected: str, *, reloader: bool = False) -> None:
    ours = [line for line in lines if not (reloader and RELOADER_LINES.match(line))]
    assert status == 1 and ours == [expected], (status, lines)


@pytest.fixture
def migrated(database: str) -> str:
    engine = get_engine({"sqlalchemy.url": database})
    migrate(engine)
    engine.dispose()
    return database


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another process (this one) is listening on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


# --- Item 12: the port is taken --------------------------------------------------------------


@pytest.mark.parametrize("reload", [False, True], ids=["pserve", "pserve --reload"])
def test_pserve_on_a_busy_port_says_so_in_one_line_and_exits(tmp_path, migrated, busy_port, reload):
    ini = write_ini(tmp_path, migrated, port=busy_port)
    command = [str(BIN / "pserve"), *(["--reload"] if reload else []), str(ini)]
    status, lines = run(*command, cwd=tmp_path, timeout=60)  # a waiting reloader times out
    assert_one_line(
        status, lines, f"127.0.0.1:{busy_port} {BUSY}", reloader=reload
    )


def test_the_graceful_runner_on_a_busy_port_says_so_in_one_line_too(tmp_path, migrated, busy_port):
    """production.ini's ``egg:appserver#waitress`` (appserver/serve.py), not only ``#main``."""
    ini = write_ini(tmp_path, migrated, port=busy_port)
    ini.write_text(ini.read_text().replace("use = egg:appserver#main", "use = egg:appserver#waitress"))
    status, lines = run(str(BIN / "pserve"), str(ini), cwd=tmp_path)
    assert_one_line(status, lines, f"127.0.0.1:{busy_port} {BUSY}")


def test_pserve_takes_another_port_from_http_port(tmp_path, migrated, busy_port):
    """``make run PORT=N`` and ``pserve CONFIG http_port=N``: the ini's port is busy, N is free."""
    ini = write_ini(tmp_path, migrated, port=busy_port)
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "pserve"), str(ini), f"http_port={port}"],
        cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        answer = wait_until_served(process, f"http://127.0.0.1:{port}/rest/api/2/serverInfo")
        assert answer.status_code == 200
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_appserver_check_names_the_busy_port(tmp_path, migrated, busy_port):
    ini = write_ini(tmp_path, migrated, port=busy_port)
    status, lines = run(str(BIN / "appserver"), str(ini), "check", cwd=tmp_path)
    assert_one_line(
        status, lines, f"appserver: error: 127.0.0.1:{busy_port} {BUSY}"
    )
    port = free_port()
    status, lines = run(str(BIN / "appserver"), str(ini), "check", "--port", str(port), cwd=tmp_path)
    assert (status, lines) == (0, [f"{ini}: settings, database and 127.0.0.1:{port} ready"])


def test_make_run_checks_the_port_before_anything_else():
    """``make run`` runs ``appserver CONFIG check`` (settings and port) first: a busy port is
    one line before initdb prints anything and before pserve's reloader starts."""
    done = subprocess.run(
        ["make", "-n", "run", "PORT=6544"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**ENV, "MAKEFLAGS": ""},
    )
    commands = [line for line in done.stdout.splitlines() if "/appserver " in line or "/pserve " in line]
    assert [c.split()[1:3] for c in commands[:2]] == [
        ["development.ini", "check"], ["development.ini", "initdb"]
    ], commands
    assert "--port 6544" in commands[0]
    assert "pserve --reload development.ini http_port=6544" in commands[2]


def test_check_follows_an_ini_that_uses_another(tmp_path, migrated):
    """An ini may take its settings and its server from another (``use = config:…``, as the
    load suite and production_ini_on do): the commands read what pserve would."""
    port = free_port()
    base = write_ini(tmp_path, "sqlite:///unused.sqlite", port=port)
    child = tmp_path / "child.ini"
    child.write_text(
        f"[app:main]\nuse = config:{base}#main\nsqlalchemy.url = {migrated}\n\n"
        f"[server:main]\nuse = config:{base}#main\n\n"
        f"[alembic]\nscript_location = {ROOT / 'migrations'}\n"
    )
    status, lines = run(str(BIN / "appserver"), str(child), "check", cwd=tmp_path)
    assert (status, lines) == (0, [f"{child}: settings, database and 127.0.0.1:{port} ready"])


def test_with_port_moves_every_address():
    assert with_port({"listen": "127.0.0.1:6543 [::1]:6543"}, "7000")["listen"] == "127.0.0.1:7000 [::1]:7000"
    assert with_port({"listen": "127.0.0.1:6543"}, None) == {"listen": "127.0.0.1:6543"}


# --- Item 13: configuration mistakes ---------------------------------------------------------


def test_a_missing_ini_file_is_one_line(tmp_path):
    status, lines = run(str(BIN / "appserver"), "nowhere.ini", "initdb", cwd=tmp_path)
    assert_one_line(
        status,
        lines,
        "appserver: error: nowhere.ini: no such configuration file. Give the path of an ini file "
        "(development.ini or production.ini in the checkout).",
    )


NOT_INI_FILES = {
    "notes.txt": ("hello\n", "Could not find a matching loader"),
    "passwd": ("root:x:0:0\n", "Could not determine the loader scheme"),
    "no-sections.ini": ("x = 1\n", "File contains no section headers"),
    "other-app.ini": ("[app:other]\nuse = egg:appserver\n", "No section 'main'"),
}


@pytest.mark.parametrize("name", NOT_INI_FILES)
def test_a_file_that_is_no_applications_ini_file_is_one_line(tmp_path, name):
    text, reason = NOT_INI_FILES[name]
    (tmp_path / name).write_text(text)
    status, lines = run(str(BIN / "appserver"), name, "check", "--no-database", cwd=tmp_path)
    assert status == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"appserver: error: {name}: not an application's ini file ({reason}")
    assert lines[0].endswith("Give the path of an ini file with an [app:main] section "
                             "(development.ini or production.ini in the checkout).")


def test_a_folder_is_no_ini_file(tmp_path):
    status, lines = run(str(BIN / "appserver"), ".", "check", cwd=tmp_path)
    assert_one_line(status, lines, "appserver: error: . is a folder: give the path of an ini file in it (development.ini?).")


@pytest.mark.parametrize("port", ["0", "-1", "72238"])
def test_a_port_out_of_range_is_one_line_not_a_wrapped_port(tmp_path, port):
    """The resolver takes 72238 for 6702: the server would quietly listen elsewhere. (The
    address is checked before the database, which is never reached here.)"""
    ini = write_ini(tmp_path, f"sqlite:///{tmp_path / 'never.sqlite'}", port=free_port())
    status, lines = run(str(BIN / "appserver"), str(ini), "check", "--no-database", "--port", port, cwd=tmp_path)
    assert_one_line(status, lines, f"appserver: error: {port} is not a port number: use 1 to 65535")
    status, lines = run(str(BIN / "pserve"), str(ini), f"http_port={port}", cwd=tmp_path)
    assert_one_line(status, lines, f"{port} is not a port number: use 1 to 65535")


def test_check_reports_the_address_that_appserver_listen_sets(tmp_path, busy_port):
    """Both servers take APPSERVER_LISTEN over the ini's address and http_port, and so does
    ``check``: the address checked is the address served (production.ini's way to a port)."""
    ini = write_ini(tmp_path, f"sqlite:///{tmp_path / 'never.sqlite'}", port=free_port())
    port = free_port()
    status, lines = run(str(BIN / "appserver"), str(ini), "check", "--no-database", cwd=tmp_path,
                        env={**ENV, "APPSERVER_LISTEN": f"127.0.0.1:{port}"})
    assert (status, lines) == (0, [f"{ini}: settings and 127.0.0.1:{port} ready"])
    status, lines = run(str(BIN / "appserver"), str(ini), "check", "--no-database", cwd=tmp_path,
                        env={**ENV, "APPSERVER_LISTEN": f"127.0.0.1:{busy_port}"})
    # PORT and http_port would not help: APPSERVER_LISTEN wins over them (an outside review).
    assert_one_line(status, lines, f"appserver: error: 127.0.0.1:{busy_port} is in use — is another server "
                    "running? Another address: APPSERVER_LISTEN=HOST:PORT (it is set, and wins over PORT and http_port)")


BAD_SETTINGS = [
    (
        "appserver.session.idle_timeout = soon",
        "appserver.session.idle_timeout: expected a whole number, got 'soon'",
    ),
    (
        "appserver.sesion.idle_timeout = 600",
        "appserver.sesion.idle_timeout: unknown setting; did you mean appserver.session.idle_timeout?",
    ),
    (
        "appserver.login.max_failure = 5",
        "appserver.login.max_failure: unknown setting; did you mean appserver.login.max_failures?",
    ),
    # The libraries' settings in the same section (an outside review: each was a traceback,
    # and ``check`` said "ready").
    ("sqlalchemy.pool_size = abc", "sqlalchemy.pool_size: expected a whole number, got 'abc'"),
    (
        "sqlalchemy.poolsize = 5",
        "sqlalchemy.poolsize: unknown setting; SQLAlchemy's create_engine has no such option "
        "(docs/configuration.md lists the ones this project sets)",
    ),
    ("retry.attempts = three", "retry.attempts: expected a whole number of 1 or more, got 'three'"),
    (
        "pyramid.includes = pyramid_tmm",
        "pyramid.includes: no module named 'pyramid_tmm': check the spelling, or install it into this virtualenv",
    ),
    # An adversarial review of the above: these were still tracebacks, or the wrong words.
    ("pyramid.includes = os", "pyramid.includes: 'os' has no includeme(config): it is not a Pyramid add-on"),
    (
        "sqlalchemy.isolation_level = BOGUS",
        "sqlalchemy.isolation_level: expected one of SERIALIZABLE, REPEATABLE READ, READ COMMITTED, "
        "READ UNCOMMITTED, AUTOCOMMIT, got 'BOGUS'",
    ),
    (
        "sqlalchemy.connect_args = x",
        "sqlalchemy.connect_args: not a setting for an ini file (it is a dictionary); give the driver's "
        "parameters in the URL's query, postgresql+psycopg://HOST/NAME?sslmode=require",
    ),
    ("sqlalchemy.echo = maybe", "sqlalchemy.echo: expected true, false or debug, got 'maybe'"),
]


@pytest.mark.parametrize(("line", "message"), BAD_SETTINGS, ids=[
    "bad value", "typo", "singular", "engine value", "engine option", "retry", "includes", "not an add-on",
    "isolation level", "connect_args", "echo"])
@pytest.mark.parametrize("program", ["appserver", "pserve"])
def test_a_bad_or_unknown_setting_is_one_line_naming_it(tmp_path, program, line, message):
    ini = write_ini(tmp_path, f"sqlite:///{tmp_path / 'x.sqlite'}", extra=line)
    if program == "appserver":
        status, lines = run(str(BIN / "appserver"), str(ini), "initdb", cwd=tmp_path)
        assert_one_line(status, lines, f"appserver: error: {ini}: {message}")
    else:
        status, lines = run(str(BIN / "pserve"), str(ini), cwd=tmp_path)
        assert_one_line(status, lines, f"{ini}: {message}")


@pytest.mark.parametrize("line", [line for line, _ in BAD_SETTINGS[3:]])
def test_check_finds_the_libraries_settings_without_the_database(tmp_path, line):
    ini = write_ini(tmp_path, f"sqlite:///{tmp_path / 'x.sqlite'}", extra=line)
    status, lines = run(str(BIN / "appserver"), str(ini), "check", "--no-database", cwd=tmp_path)
    (message,) = [message for bad, message in BAD_SETTINGS if bad == line]
    assert_one_line(status, lines, f"appserver: error: {ini}: {message}")


def test_a_setting_written_twice_is_named_with_its_line(tmp_path):
    ini = write_ini(tmp_path, f"sqlite:///{tmp_path / 'x.sqlite'}", extra="retry.attempts = 2\nretry.attempts = 3")
    status, lines = run(str(BIN / "appserver"), str(ini), "check", cwd=tmp_path)
    assert_one_line(status, lines, f"appserver: error: {ini}: line 7: retry.attempts is set twice in "
                                   "[app:main]: keep one of the two lines")


def test_an_unknown_setting_without_a_close_match_points_to_the_list():
    settings = base_settings("sqlite://", **{"appserver.colour": "blue"})
    with pytest.raises(ConfigurationError) as raised:
        parse_settings(settings)
    assert str(raised.value) == (
        "appserver.colour: unknown setting; the settings are listed in docs/configuration.md"
    )


def test_known_settings_come_from_the_schema(monkeypatch):
    """A setting another change adds to SCHEMA is known at once; settings outside the
    ``appserver.`` namespace (pyramid's, sqlalchemy's) and the injected ones are left alone."""
    settings = base_settings("sqlite://", **{"appserver.brand_new": "x", "pyramid.whatever": "1"})
    settings["appserver.clock"] = object()
    with pytest.raises(ConfigurationError, match="appserver.brand_new: unknown setting"):
        parse_settings(settings)
    monkeypatch.setitem(SCHEMA, "appserver.brand_new", ("brand_new", settings_module._text, "x"))
    settings_module.check_known(settings)  # no error
    for name in SCHEMA:
        settings_module.check_known({name: "anything"})


# --- Item 13: database mistakes --------------------------------------------------------------


def unreachable_url(database: str, tmp_path: Path) -> str:
    if database.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'no-such-folder' / 'x.sqlite'}"
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/appserver"


def test_an_unreachable_database_is_one_line_from_the_command_line(tmp_path, database):
    url = unreachable_url(database, tmp_path)
    ini = write_ini(tmp_path, url)
    status, lines = run(str(BIN / "appserver"), str(ini), "initdb", "--demo", cwd=tmp_path)
    assert status == 1 and len(lines) == 1, lines
    if database.startswith("sqlite"):
        assert lines[0] == (
            f"appserver: error: cannot use the database {url}: unable to open database file. "
            "Check that its folder exists and is writable, or fix sqlalchemy.url (or "
            "APPSERVER_DATABASE_URL)"
        )
    else:
        assert lines[0].startswith(f"appserver: error: cannot use the database {url}: connection failed")
        assert lines[0].endswith(
            "Connection refused. Start it, or fix sqlalchemy.url (or APPSERVER_DATABASE_URL)"
        ), lines


def test_pserve_with_an_unreachable_database_logs_why_and_serves_503(tmp_path, database):
    """The server starts (a database may come back), says why in one line at start-up, and
    each 503 it answers is logged with the driver's reason, not only the exception's name."""
    url = unreachable_url(database, tmp_path)
    port = free_port()

    def ask(base: str) -> None:
        answer = requests.get(base + "/rest/api/2/myself", auth=("fred", "fred-password"), timeout=10)
        assert answer.status_code == 503

    err = serve(write_ini(tmp_path, url, port=port), port, ask)
    reason = "unable to open database file" if database.startswith("sqlite") else "Connection refused"
    startup = [line for line in err.splitlines() if line.startswith("WARNING cannot use")]
    assert len(startup) == 1 and reason in startup[0] and "503" in startup[0], err
    assert f"database unavailable while authenticating /rest/api/2/myself: cannot use the database {url}" in err


@pytest.mark.skipif("postgresql" not in DATABASES, reason="needs TEST_DATABASE_URL (PostgreSQL)")
def test_a_missing_postgresql_database_says_how_to_create_it(tmp_path):
    from sqlalchemy import make_url

    url = make_url(os.environ["TEST_DATABASE_URL"]).set(database="appserver_no_such_db")
    url = url.render_as_string(hide_password=False)
    ini = write_ini(tmp_path, url)
    status, lines = run(str(BIN / "appserver"), str(ini), "initdb", cwd=tmp_path)
    assert_one_line(
        status,
        lines,
        f"appserver: error: the database {url} does not exist: create it (createdb "
        "appserver_no_such_db) or fix sqlalchemy.url (or APPSERVER_DATABASE_URL)",
    )


def serve(ini: Path, port: int, during: Callable[[str], None] = lambda base: None) -> str:
    """Start ``pserve INI``, wait until it answers, call ``during(base_url)``, stop it: what
    it printed on standard error (never a traceback)."""
    process = subprocess.Popen(
        [str(BIN / "pserve"), str(ini)],
        cwd=ini.parent, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_served(process, base + "/rest/api/2/serverInfo")
        during(base)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert "Traceback" not in err, err
    return err


def served_warnings(ini: Path, port: int) -> list[str]:
    return [line for line in serve(ini, port).splitlines() if line.startswith("WARNING")]


def test_an_empty_database_says_to_run_initdb(tmp_path, database):
    port = free_port()
    ini = write_ini(tmp_path, database, port=port)
    for command in (["create-user", "bob"], ["purge-events"]):  # purge-events said two lines
        status, lines = run(str(BIN / "appserver"), str(ini), *command, cwd=tmp_path)
        assert_one_line(
            status, lines, f"appserver: error: the database {database} is empty: run 'appserver {ini} initdb'"
        )
    # pserve says so and serves: initdb may be running next to a starting server.
    assert served_warnings(ini, port) == [
        f"WARNING the database {database} is empty: run 'appserver {ini} initdb' "
        "(until then requests that need it fail)"
    ]


@pytest.mark.parametrize(("url", "says"), [
    ("notaurl", "not a database URL; write sqlite:///PATH or postgresql+psycopg://USER@HOST/NAME"),
    ("postgresql+psycopg://u:s3cret@host:abc/db", "not a database URL; write sqlite:///PATH or "
     "postgresql+psycopg://USER@HOST/NAME"),
    ("postgresql://postgres:s3cret@127.0.0.1/appserver",
     "postgresql:// needs the driver psycopg2, which is not installed; this project installs psycopg "
     "(version 3): write postgresql+psycopg://..."),
    ("mysql://root@127.0.0.1/db", "mysql:// needs the driver MySQLdb, which is not installed; write "
     "sqlite:///PATH or postgresql+psycopg://USER@HOST/NAME"),
    ("nosuchdb://x/y", "unknown database 'nosuchdb'; write sqlite:///PATH or postgresql+psycopg://USER@HOST/NAME"),
])
def test_a_database_url_no_installed_driver_reads_is_one_line(tmp_path, monkeypatch, capsys, url, says):
    """create_engine's own errors were tracebacks (an ArgumentError, psycopg2 missing for
    the postgresql:// that most people write first). The password is never repeated. (The
    command in process: a traceback would fail the test as an exception.)"""
    ini = write_ini(tmp_path, "sqlite:///unused.sqlite")
    monkeypatch.setenv("APPSERVER_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)
    for command in (["check"], ["initdb"]):
        assert cli.main([str(ini), *command]) == 1
        err = capsys.readouterr().err
        assert err == f"appserver: error: {ini}: sqlalchemy.url (or APPSERVER_DATABASE_URL): {says}\n"
        assert "s3cret" not in err
    assert not (tmp_path / "unused.sqlite").exists()


def test_a_missing_sqlite_file_is_said_and_not_created(tmp_path, monkeypatch, capsys):
    """SQLite makes an empty file on connecting: a check, or a command run before initdb,
    would leave one behind (and the next check would call it "empty")."""
    database = tmp_path / "not-yet.sqlite"
    url = f"sqlite:///{database}"
    ini = write_ini(tmp_path, url)
    monkeypatch.setattr("sys.stdin", io.StringIO("a pass phrase\n"))
    expected = f"appserver: error: the database {url} does not exist yet: run 'appserver {ini} initdb'\n"
    for command in (["check"], ["create-user", "bob"], ["purge-sessions"], ["purge-events"], ["unlock", "bob"],
                    ["create-token", "bob", "ci", "--expires-days", "9"]):
        assert cli.main([str(ini), *command]) == 1, command
        assert capsys.readouterr().err == expected, command
        assert not database.exists(), command
    assert cli.main([str(ini), "initdb"]) == 0 and database.exists()
    capsys.readouterr()
    assert cli.main([str(ini), "check", "--no-database"]) == 0
    assert cli.main([str(ini), "unlock", "nobody"]) == 1
    assert capsys.readouterr().err == "appserver: error: no user named 'nobody'\n"  # the database is there now


def test_an_ini_copied_out_of_the_checkout_names_its_migrations_folder(tmp_path, capsys):
    """``script_location = %(here)s/migrations`` in a copy elsewhere names no folder: one line
    that says where the migrations are, from every command (alembic's own is a traceback)."""
    ini = write_ini(tmp_path, f"sqlite:///{tmp_path / 'app.sqlite'}")
    ini.write_text(ini.read_text().replace(str(ROOT / "migrations"), "%(here)s/migrations"))
    expected = (
        f"appserver: error: {ini}: [alembic] script_location = {tmp_path / 'migrations'} is no folder: "
        f"point it at the project's migrations folder (in this checkout: script_location = {ROOT / 'migrations'})\n"
    )
    for command in (["initdb"], ["initdb", "--demo"], ["check"], ["purge-sessions"]):
        assert cli.main([str(ini), *command]) == 1, command
        assert capsys.readouterr().err == expected, command
    assert not (tmp_path / "app.sqlite").exists()


def test_a_database_behind_the_code_says_to_run_initdb(tmp_path, database):
    engine = get_engine({"sqlalchemy.url": database})
    migrate(engine, "0002")  # a database from before the latest migration
    engine.dispose()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    port = free_port()
    ini = write_ini(tmp_path, database, port=port)
    behind = f"the database {database} is at revision 0002, this code needs {head}: run 'appserver {ini} initdb'"
    status, lines = run(str(BIN / "appserver"), str(ini), "check", cwd=tmp_path)
    assert_one_line(status, lines, f"appserver: error: {behind}")
    assert served_warnings(ini, port) == [f"WARNING {behind} (until then requests that need it fail)"]
    status, lines = run(str(BIN / "appserver"), str(ini), "initdb", cwd=tmp_path)
    assert status == 0, lines
    status, lines = run(str(BIN / "appserver"), str(ini), "check", cwd=tmp_path)
    assert status == 0, lines


@pytest.mark.parametrize("url, shown", [
    ("postgresql+psycopg://app:S3cret@db/app", "postgresql+psycopg://app:***@db/app"),
    ("postgresql+psycopg://app@db/app?password=S3cret&sslmode=require",
     "postgresql+psycopg://app@db/app?password=***&sslmode=require"),
    ("postgresql+psycopg://app@db/app?sslpassword=S3cret", "postgresql+psycopg://app@db/app?sslpassword=***"),
])
def test_a_database_url_is_shown_without_its_passwords(url, shown):
    """libpq takes the password in the query too; it was logged in clear with every
    "database unavailable" line of an outage."""
    assert safe_url(url) == shown
    assert "S3cret" not in database_problem(RuntimeError("could not connect"), url)


def test_a_lone_port_in_appserver_listen_says_how_to_write_it(monkeypatch):
    """waitress read "7253" as a host: "cannot listen on 0.0.28.85:8080"."""
    from appserver.startup import StartupError, listen_settings

    monkeypatch.setenv("APPSERVER_LISTEN", "7253")
    with pytest.raises(StartupError, match=r"^APPSERVER_LISTEN=7253: give host:port, e.g. 127.0.0.1:7253, or unix:PATH$"):
        listen_settings({"listen": "127.0.0.1:8080"}, None)
    monkeypatch.setenv("APPSERVER_LISTEN", "127.0.0.1:7253")
    assert listen_settings({"listen": "127.0.0.1:8080"}, None)["listen"] == "127.0.0.1:7253"


def test_appserver_listen_takes_a_unix_socket_trusted_alone(monkeypatch):
    """unix:PATH is waitress's unix_socket, and the forwarded headers are trusted from the
    socket's peers alone: waitress names each "localhost", which no TCP peer ever is."""
    from appserver.startup import StartupError, listen_settings

    ini = {"listen": "127.0.0.1:8080", "trusted_proxy": "127.0.0.1", "unix_socket_perms": "660"}
    monkeypatch.setenv("APPSERVER_LISTEN", "unix:/run/appserver/1.sock")
    settings = listen_settings(ini, "7000")  # http_port too: the environment wins
    assert settings == {"unix_socket": "/run/appserver/1.sock", "trusted_proxy": "localhost",
                        "unix_socket_perms": "660"}
    monkeypatch.delenv("APPSERVER_LISTEN")
    assert listen_settings(ini, None)["trusted_proxy"] == "127.0.0.1"  # TCP: as the ini says
    for listen, message in (("unix:run/1.sock", "give the socket's absolute path"),
                            ("unix:/" + "x" * 120, "at most 107 bytes"),
                            ("unix:/tmp/a.sock 127.0.0.1:80", "must be the only address")):
        monkeypatch.setenv("APPSERVER_LISTEN", listen)
        with pytest.raises(StartupError, match=message):
            listen_settings(ini, None)
    monkeypatch.delenv("APPSERVER_LISTEN")
    with pytest.raises(StartupError, match="listens on a Unix socket"):
        listen_settings({"listen": "unix:/tmp/a.sock"}, "7000")


def test_check_tells_a_stale_socket_from_one_in_use(tmp_path):
    from appserver.startup import StartupError, check_free

    path = tmp_path / "a.sock"
    check_free({"unix_socket": str(path)})  # nothing there
    with socket.socket(socket.AF_UNIX) as holder:
        holder.bind(str(path))
        holder.listen()
        with pytest.raises(StartupError, match=rf"^unix:{path} is in use"):
            check_free({"unix_socket": str(path)})
    check_free({"unix_socket": str(path)})  # left behind, nobody listens: waitress replaces it
    path.unlink()
    path.write_text("")
    with pytest.raises(StartupError, match="exists and is not a socket"):
        check_free({"unix_socket": str(path)})
    path.unlink()
    path.symlink_to(tmp_path / "nowhere.sock")  # dangling (an outside review: a traceback)
    with pytest.raises(StartupError, match="exists and is not a socket"):
        check_free({"unix_socket": str(path)})
    with pytest.raises(StartupError, match="does not exist"):
        check_free({"unix_socket": str(tmp_path / "missing" / "a.sock")})


def test_a_server_keeps_its_socket_path(tmp_path):
    """The lock beside the socket: a check takes it and lets go, the server keeps it while it
    runs, and any other start on that path is refused meanwhile."""
    from appserver import startup

    path = str(tmp_path / "a.sock")
    startup.check_free({"unix_socket": path})  # a check, twice: nothing kept
    startup.check_free({"unix_socket": path})
    startup.check_free({"unix_socket": path}, claim=True)
    try:
        check = subprocess.run([sys.executable, "-c", "import sys; from appserver import startup; "
                                "startup.check_free({'unix_socket': sys.argv[1]})", path],
                               capture_output=True, text=True, timeout=60)
        assert f"unix:{path} is in use" in check.stderr, check.stderr
    finally:
        os.close(startup._CLAIMED.pop(path))
    Path(path + ".lock").unlink()
    os.symlink(tmp_path / "elsewhere", path + ".lock")
    with pytest.raises(startup.StartupError, match=r"a.sock.lock: Too many levels of symbolic links"):
        startup.check_free({"unix_socket": path})
