"""Start-up mistakes as one line that says what to do, for ``appserver`` and for ``pserve``.

A missing ini file, a bad or misspelt setting, a database that is down, missing or not
migrated, a port another server holds: each is a mistake a person fixes, not a bug, so each
is one sentence naming the file, the setting or the address, never a traceback.

``pserve`` reaches this module through the ini file: ``use = egg:appserver`` in
``[app:main]`` is :func:`app_factory`, ``use = egg:appserver#main`` in ``[server:main]`` is
:func:`server_factory` (waitress, after a check that the address is free).
"""
from __future__ import annotations

import errno
import fcntl
import functools
import logging
import os
import signal
import socket
import stat
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy import make_url, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

#: What a person changes to point the application at another database.
DATABASE_SETTING = "sqlalchemy.url (or APPSERVER_DATABASE_URL)"


class StartupError(Exception):
    """A mistake in the configuration or the surroundings, said in one line."""


def ini_path(config_uri: str) -> str:
    """The file part of a ``CONFIG[#section]`` URI, as plaster and pserve read it."""
    return config_uri.split("#", 1)[0]


def config_file(config_uri: str) -> Path:
    """The ini file of ``CONFIG[#section]``, which must exist."""
    path = Path(ini_path(config_uri))
    if path.is_dir():
        raise StartupError(f"{path} is a folder: give the path of an ini file in it (development.ini?).")
    if not path.is_file():
        raise StartupError(
            f"{path}: no such configuration file. Give the path of an ini file "
            "(development.ini or production.ini in the checkout)."
        )
    return path


def first_line(error: BaseException) -> str:
    """The driver's own reason (psycopg, sqlite3), without SQLAlchemy's wrapping and
    background links; statement parameters are never shown (``hide_parameters``)."""
    reason = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(reason).splitlines() if line.strip()]
    return lines[0] if lines else type(reason).__name__


def safe_url(url: Any) -> str:
    """The database URL without its password, in the user part or as libpq's ``?password=``
    (or ``sslpassword=``, the client key's) in the query."""
    try:
        parsed = make_url(str(url))
    except sa_exc.ArgumentError:
        return "(an unreadable URL)"
    hidden = {key: "***" for key in parsed.query if key.lower() in _PASSWORD_PARAMETERS}
    # The query's values are rendered percent-encoded: "***" as "%2A%2A%2A".
    return parsed.update_query_dict(hidden).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


_PASSWORD_PARAMETERS = frozenset({"password", "sslpassword"})


def database_problem(error: BaseException, url: Any) -> str:
    """One line for a database that cannot be used: what happened and what to do."""
    reason = first_line(error)
    where = safe_url(url)
    lowered = reason.lower()
    if getattr(getattr(error, "orig", None), "sqlstate", None) == "55P03":  # lock_not_available
        return (
            f"a statement on {where} waited longer than appserver.database.lock_timeout for a "
            "lock: look for a transaction that holds locks for long (pg_stat_activity, state "
            "'idle in transaction')"
        )
    if "does not exist" in lowered and "database" in lowered:
        name = make_url(str(url)).database
        return (
            f"the database {where} does not exist: create it (createdb {name}) "
            f"or fix {DATABASE_SETTING}"
        )
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        return f"the database {where} has no tables: run 'appserver CONFIG initdb'"
    if "no such column" in lowered or ("column" in lowered and "does not exist" in lowered):
        return f"the database {where} is behind this code ({reason}): run 'appserver CONFIG initdb'"
    if make_url(str(url)).get_backend_name() == "sqlite":
        return (
            f"cannot use the database {where}: {reason}. Check that its folder exists and "
            f"is writable, or fix {DATABASE_SETTING}"
        )
    return f"cannot use the database {where}: {reason}. Start it, or fix {DATABASE_SETTING}"


def head_revision(config_path: Path | None) -> str | None:
    """The newest migration this code knows (from the ini's ``[alembic]`` section), or None
    when the ini has no migrations to compare with."""
    return code_revisions(config_path)[0]


@functools.lru_cache(maxsize=8)
def code_revisions(config_path: Path | None) -> tuple[str | None, frozenset[str]]:
    """The newest migration this code knows and the older ones, from the ini's ``[alembic]``
    section (where ``initdb`` finds them, installed package or checkout); (None, nothing)
    when the ini has no migrations to compare with. Read once per process: alembic imports
    every migration."""
    if config_path is None:
        return None, frozenset()
    # Loading alembic logs its plugin set-up at INFO: not news at every start.
    alembic_log = logging.getLogger("alembic")
    level = alembic_log.level
    alembic_log.setLevel(max(level, logging.WARNING))
    try:
        from alembic.config import Config as AlembicConfig
        from alembic.script import ScriptDirectory
        from alembic.util import CommandError

        alembic_config = AlembicConfig(str(config_path))
        try:
            if not alembic_config.get_main_option("script_location"):
                return None, frozenset()
            scripts = ScriptDirectory.from_config(alembic_config)
            head = scripts.get_current_head()
            return head, frozenset(script.revision for script in scripts.walk_revisions()) - {head}
        except CommandError:  # no [alembic] section (an ini that only points at another one)
            return None, frozenset()
    finally:
        alembic_log.setLevel(level)


def migrations_problem(config_path: Path) -> str | None:
    """One line when the ini's ``[alembic] script_location`` names no folder (an ini copied
    out of the checkout keeps ``%(here)s/migrations``): alembic's own answer is a traceback."""
    from alembic.config import Config as AlembicConfig
    from alembic.util import CommandError

    try:
        location = AlembicConfig(str(config_path)).get_main_option("script_location")
    except CommandError:  # no [alembic] section: no migrations to look for
        return None
    if not location or ":" in location or Path(location).is_dir():  # "package:folder" is alembic's
        return None
    ours = Path(__file__).resolve().parent.parent / "migrations"
    hint = f" (in this checkout: script_location = {ours})" if ours.is_dir() else ""
    return (
        f"{config_path}: [alembic] script_location = {location} is no folder: point it at the "
        f"project's migrations folder{hint}"
    )


def missing_sqlite_file(url: Any) -> bool:
    """A SQLite database named by a file path that is not there, in a folder that is (SQLite
    would make an empty file on connecting; without the folder it fails to open, and says
    so). In-memory and ``file:`` URI databases are never missing."""
    if url.get_backend_name() != "sqlite":
        return False
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or url.query.get("uri"):
        return False
    path = Path(database)
    return not path.exists() and path.parent.is_dir()


def database_status(engine: Engine, config_uri: str | None) -> str | None:
    """None when the database answers and is migrated to this code's newest revision, or to
    a revision this code does not know: a newer release's, whose migrations only add (as
    the servers of this release go on serving it, its commands go on working: the hourly
    purge of a machine not upgraded yet, an emergency revoke-sessions after a rollback).
    Else the one line that says what to do."""
    config_path = Path(ini_path(config_uri)) if config_uri else None
    initdb = f"appserver {config_path or 'CONFIG'} initdb"
    problem = migrations_problem(config_path) if config_path is not None else None
    if problem is not None:  # initdb could not help: the ini first
        return problem
    if missing_sqlite_file(engine.url):  # connecting would create it: a check leaves no file
        return f"the database {safe_url(engine.url)} does not exist yet: run '{initdb}'"
    try:
        with engine.connect() as connection:
            current = stored_revision(connection)
    except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.ProgrammingError) as error:
        return database_problem(error, engine.url)
    if current is None:
        return f"the database {safe_url(engine.url)} is empty: run '{initdb}'"
    head, older = code_revisions(config_path)
    if head is not None and current in older:
        return (
            f"the database {safe_url(engine.url)} is at revision {current}, this code needs "
            f"{head}: run '{initdb}'"
        )
    return None


def stored_revision(connection: Connection) -> str | None:
    """The migration the database is at; None for an empty one (no ``alembic_version``)."""
    try:
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except (sa_exc.OperationalError, sa_exc.ProgrammingError) as error:
        if "alembic_version" not in first_line(error):
            raise
        return None


def newer_revision(engine: Engine, config_uri: str) -> str | None:
    """The database's revision when it is one this code does not know (a newer release
    migrated it), else None: ``initdb`` cannot go back."""
    head, older = code_revisions(Path(ini_path(config_uri)))
    with engine.connect() as connection:
        current = stored_revision(connection)
    return current if head is not None and current not in (None, head, *older) else None


# --- pserve: the application ----------------------------------------------------------------


def app_factory(global_config: Mapping[str, Any], **settings: str):
    """``[app:main] use = egg:appserver``: the application, or one line and exit status 1.

    A bad setting stops start-up. The database's state is said in one warning line but does
    not: a database that is down may come back (pages answer 503 until then, as when it goes
    away later), and one that is empty or behind may be being migrated right now (``initdb``
    next to a starting server, a rolling upgrade).
    """
    from . import main
    from .settings import ConfigurationError, check_framework_settings

    source = global_config.get("__file__")
    try:
        check_framework_settings(settings)
        app = main(dict(global_config), **settings)
    except ConfigurationError as error:
        raise SystemExit(f"{source}: {error}" if source else str(error)) from None
    if source:  # /status compares the database's migration with these (appserver.health)
        app.registry.code_revisions = code_revisions(Path(ini_path(source)))
    problem = database_status(app.registry.dbengine, source)
    if problem is not None:
        consequence = "until then requests that need it fail" if "initdb" in problem else (
            "pages answer 503 until it is reachable"
        )
        log.warning("%s (%s)", problem, consequence)
    return app


# --- pserve: the server ---------------------------------------------------------------------


def listen_addresses(server_settings: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """waitress's own reading of ``listen``/``host``/``port``: (family, type, proto, address).
    A port outside 1-65535 is refused first: the resolver would take 72238 for 6702. A Unix
    socket (``unix_socket``, which :func:`listen_settings` makes of ``unix:PATH``) is one
    address: its path."""
    from waitress.adjustments import Adjustments

    if server_settings.get("unix_socket"):
        return [(socket.AF_UNIX, socket.SOCK_STREAM, 0, str(server_settings["unix_socket"]))]
    ports = [str(server_settings.get("port", "")).strip()]
    ports += [entry.rpartition(":")[2] for entry in str(server_settings.get("listen", "")).split()]
    for port in ports:
        if port.lstrip("-").isdigit() and not 1 <= int(port) <= 65535:
            raise StartupError(f"{port} is not a port number: use 1 to 65535")
    known = {key: value for key, value in server_settings.items() if key in Adjustments._param_map}
    try:
        return Adjustments(**known).listen
    except ValueError as error:  # waitress: "Invalid host/port specified."
        raise StartupError(f"cannot listen on {server_settings.get('listen', '')!s}: {error}") from None


def display(address: Any) -> str:
    if isinstance(address, str):  # a Unix socket's path
        return f"{UNIX_PREFIX}{address}"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_free(server_settings: Mapping[str, Any], claim: bool = False) -> None:
    """Raise StartupError when another process listens on an address this server would use.

    A trial bind (with SO_REUSEADDR, as waitress binds) tells a listening socket from a port
    that only has connections in TIME_WAIT. A Unix socket is checked by connecting to it:
    see :func:`check_free_socket_path`; the server itself (``claim``) keeps its socket path
    for as long as it runs.
    """
    for family, socktype, proto, address in listen_addresses(server_settings):
        if family == socket.AF_UNIX:
            check_free_socket_path(address, claim)
            continue
        with socket.socket(family, socktype, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                raise StartupError(address_problem(error, address)) from None


#: The socket paths this process serves on, each with the open file of its lock: the kernel
#: releases the lock when the process ends, however it ends (a SIGKILL too).
_CLAIMED: dict[str, int] = {}


def claim_socket_path(path: str, keep: bool) -> None:
    """An exclusive ``flock`` on ``PATH.lock``, beside the socket, taken before the socket is
    checked and held (``keep``) until the process ends. Two servers started at the same
    moment on one path would otherwise both find it free; the second's waitress would unlink
    the first's socket and bind its own, and the first would go on running, reachable by no
    one. The lock also covers a stopping server's last requests: it has closed its socket,
    but a new process on its path waits for it to end (a restart stops, then starts)."""
    if path in _CLAIMED:
        return
    try:
        descriptor = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as error:  # a folder this user may not write to, a symbolic link there
        raise StartupError(f"{path}.lock: {error.strerror or error}: the server keeps this lock "
                           "file beside its socket") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise StartupError(address_problem(OSError(errno.EADDRINUSE, "in use"), path)) from None
    if keep:
        _CLAIMED[path] = descriptor
    else:
        os.close(descriptor)  # a check only (``appserver CONFIG check``): the server takes it


def check_free_socket_path(path: str, claim: bool = False) -> None:
    """A socket file nobody listens on is stale (its process was killed, or stopped without
    removing it): waitress removes it and binds anew, so it must not stop the start. A socket
    that accepts a connection belongs to a running server, which waitress would quietly
    unlink and take over: that is refused here, in one line, as is a path another process
    has claimed (:func:`claim_socket_path`)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        folder = os.path.dirname(path) or "."
        if not os.path.isdir(folder):
            raise StartupError(f"{display(path)}: the folder {folder} does not exist: create it "
                               "(the systemd unit's RuntimeDirectory= does)") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise StartupError(f"{display(path)}: permission denied: this user cannot create files in {folder}")
        claim_socket_path(path, claim)
        return
    if not stat.S_ISSOCK(mode):  # a symbolic link too: the bind would fail on it, with a traceback
        raise StartupError(f"{display(path)} exists and is not a socket: remove it or listen elsewhere")
    claim_socket_path(path, claim)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)  # a listener whose backlog is full does not answer at once; it is still a listener
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            return  # stale: nobody listens
        except TimeoutError:
            pass
        except OSError as error:
            raise StartupError(address_problem(error, path)) from None
    raise StartupError(address_problem(OSError(errno.EADDRINUSE, "in use"), path))


def address_problem(error: OSError, address: Any) -> str:
    if isinstance(address, str):  # a Unix socket
        if error.errno == errno.EADDRINUSE:
            return (f"{display(address)} is in use — is another server running? Stop it, or give "
                    f"another socket path: {LISTEN_VARIABLE}=unix:PATH")
        if error.errno == errno.EACCES:
            return f"{display(address)}: permission denied — this user may not use that socket"
        return f"cannot listen on {display(address)}: {error.strerror or error}"
    if error.errno == errno.EADDRINUSE:
        if os.environ.get(LISTEN_VARIABLE):  # it beats PORT and http_port: they would not help
            return (f"{display(address)} is in use — is another server running? Another address: "
                    f"{LISTEN_VARIABLE}=HOST:PORT (it is set, and wins over PORT and http_port)")
        return (f"{display(address)} is in use — is another server running? Another port: "
                "make run PORT=N, or pserve CONFIG http_port=N")
    if error.errno == errno.EACCES:
        return f"{display(address)}: permission denied — choose a port above 1023"
    return f"cannot listen on {display(address)}: {error.strerror or error}"


#: The listening address from the environment (the systemd unit's instance socket, the
#: cluster's): it beats the ini's ``listen`` and ``http_port``.
LISTEN_VARIABLE = "APPSERVER_LISTEN"

#: ``unix:/run/appserver/1.sock``: a Unix domain socket instead of host:port, in
#: ``APPSERVER_LISTEN`` or the ini's ``listen``.
UNIX_PREFIX = "unix:"

#: What waitress reports as REMOTE_ADDR for every peer of a Unix socket (server.py, fix_addr).
UNIX_PEER = "localhost"

#: sun_path holds 108 bytes with its terminating NUL.
UNIX_PATH_MAX = 107


def listen_settings(server_settings: Mapping[str, Any], port: Any) -> dict[str, Any]:
    """The server's settings with the address it will really serve on: ``APPSERVER_LISTEN``
    if set, else the ini's moved to ``port`` (``http_port``). Both server entry points and
    ``appserver CONFIG check`` use it, so the address checked is the address served.

    ``unix:PATH`` becomes waitress's ``unix_socket`` (see :func:`unix_socket_settings`)."""
    listen = os.environ.get(LISTEN_VARIABLE, "").strip()
    if listen.isdigit():  # waitress would read a lone port as a host ("0.0.28.85:8080")
        raise StartupError(f"{LISTEN_VARIABLE}={listen}: give host:port, e.g. 127.0.0.1:{listen}, "
                           f"or {UNIX_PREFIX}PATH")
    if listen:
        settings = dict(server_settings)
        for key in ("host", "port", "listen", "unix_socket"):
            settings.pop(key, None)
        settings["listen"] = listen
    else:
        settings = with_port(server_settings, port)
    return unix_socket_settings(settings)


def unix_socket_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """``listen = unix:PATH`` as waitress takes it: ``unix_socket = PATH``, and forwarded
    headers trusted from the socket alone.

    waitress reports every peer of a Unix socket as "localhost" (never an address a TCP peer
    has), so ``trusted_proxy = localhost`` trusts exactly who may connect to the socket, which
    its permissions decide (nginx's user and the service's). The ini's ``trusted_proxy``
    names nginx's TCP address (127.0.0.1, for ``pserve production.ini`` on a port); on a
    socket that address never connects, and every forwarded header would be dropped."""
    listen = str(settings.get("listen", "")).strip()
    entries = listen.split()
    if not any(entry.startswith(UNIX_PREFIX) for entry in entries):
        return settings
    if len(entries) > 1:
        raise StartupError(f"listen = {listen}: a Unix socket ({UNIX_PREFIX}PATH) must be the only address")
    path = entries[0][len(UNIX_PREFIX):]
    if not path.startswith("/"):
        raise StartupError(f"{entries[0]}: give the socket's absolute path, e.g. {UNIX_PREFIX}/run/appserver/1.sock")
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        raise StartupError(f"{entries[0]}: a socket path is at most {UNIX_PATH_MAX} bytes long; choose a shorter one")
    settings = dict(settings)
    for key in ("host", "port", "listen"):
        settings.pop(key, None)
    settings["unix_socket"] = path
    if settings.get("trusted_proxy"):
        settings["trusted_proxy"] = UNIX_PEER
    return settings


def with_port(server_settings: Mapping[str, Any], port: Any) -> dict[str, Any]:
    """``listen`` with every address moved to ``port`` (``pserve CONFIG http_port=N``,
    ``make run PORT=N``); the settings unchanged when no port is given."""
    settings = dict(server_settings)
    if port in (None, ""):
        return settings
    if str(settings.get("listen", "")).strip().startswith(UNIX_PREFIX):
        raise StartupError(f"http_port={port}: this server listens on a Unix socket "
                           f"({settings['listen']}), not a port")
    try:
        number = int(str(port))
    except ValueError:
        raise StartupError(f"http_port: expected a port number, got {port!r}") from None
    if not 1 <= number <= 65535:
        raise StartupError(f"{number} is not a port number: use 1 to 65535")
    hosts = [display((a[3][0], number)) for a in listen_addresses(settings)]
    settings.pop("host", None)
    settings.pop("port", None)
    settings["listen"] = " ".join(dict.fromkeys(hosts))
    return settings


def server_factory(global_conf: Mapping[str, Any], **settings: Any):
    """``[server:main] use = egg:appserver#main``: waitress, once the address is known to be
    free. pserve loads the server before the application, so a busy port is said at once."""
    try:
        settings = listen_settings(settings, global_conf.get("http_port"))
        check_free(settings, claim=True)
    except StartupError as error:
        exit_with(str(error))

    def serve(app) -> None:
        from .serve import create_server, say_where

        logging.basicConfig()  # as waitress.serve does
        server = create_server(app, **settings)
        say_where(server, settings)
        server.run()

    return serve


def exit_with(message: str) -> NoReturn:
    """One line, exit status 1, and under ``pserve --reload`` its file monitor stops too: it
    would otherwise wait for a file to change, and no edit frees a port. The monitor stops a
    worker with SIGTERM, which here means the same exit status 1."""
    import hupper

    if not hupper.is_active():
        raise SystemExit(message)
    print(message, file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(1))
    hupper.get_reloader().graceful_shutdown()
    time.sleep(30)  # the monitor's SIGTERM ends this wait; in case it never comes:
    os._exit(1)


def app_ini_settings(config_uri: str) -> dict:
    """The application's settings as pserve would build them: ``use = config:…`` followed,
    ``%(here)s`` filled in (not yet the environment's overrides). A file that is no ini
    file, or has no such ``[app:…]`` section, is a one-line StartupError."""
    from configparser import DuplicateOptionError, DuplicateSectionError
    from configparser import Error as IniError

    from plaster.exceptions import PlasterError

    path, _, name = config_uri.partition("#")
    try:
        return dict(ini_loader(path).get_wsgi_app_settings(name or None))
    except DuplicateOptionError as error:  # the file is fine but for one line
        raise StartupError(f"{path}: line {error.lineno}: {error.option} is set twice in "
                           f"[{error.section}]: keep one of the two lines") from None
    except DuplicateSectionError as error:
        raise StartupError(f"{path}: line {error.lineno}: a second [{error.section}] section: "
                           "merge the two") from None
    except (PlasterError, IniError, LookupError) as error:  # LookupError: "No section 'main'"
        reason = first_line(error).rstrip(".")
        raise StartupError(
            f"{path}: not an application's ini file ({reason}). Give the path of an ini file "
            "with an [app:main] section (development.ini or production.ini in the checkout)."
        ) from None


@functools.lru_cache(maxsize=16)
def ini_loader(path: str) -> Any:
    """plaster's loader of the ini file at ``path`` (its settings, logging and application).

    Finding a loader scans the entry points of every installed distribution (60 ms here);
    a command asked for one six times, as ``pyramid.paster``'s helpers each do. The loader
    reads the file anew on every call, so one kept per path sees every edit.
    """
    from plaster import get_loader

    return get_loader(str(config_file(path)), protocols=["wsgi"])


def server_ini_settings(config_uri: str) -> dict:
    """The ``[server:…]`` settings as pserve would read them, ``use = config:…`` followed."""
    from paste.deploy.loadwsgi import SERVER, loadcontext

    path = config_file(config_uri).resolve()
    return dict(loadcontext(SERVER, f"config:{path}", name="main").config())
