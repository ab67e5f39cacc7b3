"""Database wiring: engine, session factory and ``request.dbsession`` (the wiki2 pattern).

Importing this package imports every model, so ``Base.metadata`` is complete for alembic.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any
from weakref import WeakKeyDictionary

from pyramid.config import Configurator
from pyramid.request import Request
from sqlalchemy import engine_from_config, event, make_url
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, configure_mappers, sessionmaker
from transaction import TransactionManager

from .auth_event import AuthEvent  # noqa: F401
from .issue import Issue, Project  # noqa: F401
from .login_throttle import LoginThrottle  # noqa: F401
from .meta import Base, metadata  # noqa: F401
from .personal_token import PersonalToken  # noqa: F401
from .prepared import note_variant
from .remember_token import RememberToken  # noqa: F401
from .transaction_events import MANAGER_KEY, register_once
from .user import User, canonical_username  # noqa: F401
from .user_session import UserSession  # noqa: F401

configure_mappers()

log = logging.getLogger(__name__)

#: Errors that may mean "the database cannot serve this request right now" (down,
#: restarting, pool exhausted, not migrated yet): answered with 503 and Retry-After, never
#: with anonymous content. A ``ProgrammingError`` only when :func:`is_unavailable` says so.
DATABASE_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, sa_exc.ProgrammingError)

#: PostgreSQL's undefined_table and undefined_column: the schema is behind the code (a
#: process started before ``initdb``; SQLite reports these as an OperationalError).
SCHEMA_BEHIND_SQLSTATES = frozenset({"42P01", "42703"})


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` (one of :data:`DATABASE_UNAVAILABLE`) is the database's state, a
    503 until it changes, and not a bug in a statement, which is a 500. A table or column
    missing on PostgreSQL is the first: every request of a process that started before the
    migration it needs failed with a 500 and a traceback (an outside review)."""
    if isinstance(error, sa_exc.ProgrammingError):
        return getattr(error.orig, "sqlstate", None) in SCHEMA_BEHIND_SQLSTATES
    return isinstance(error, DATABASE_UNAVAILABLE)

#: Methods whose requests only read: on SQLite their transactions begin without the write lock.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: The execution option that makes SQLite's BEGIN take the write lock at once.
SQLITE_BEGIN = "appserver_sqlite_begin"

#: In ``session.info``: the session's COMMIT has begun (see :func:`commit_in_doubt`).
COMMITTING = "appserver.committing"

#: Marks a safe request served without a pyramid_tm transaction (environ), and its read-only
#: ``request.dbsession`` (``session.info``).
READ_ONLY = "appserver.read_only"


class ReadOnlySessionError(RuntimeError):
    """A safe request (GET, HEAD, OPTIONS) tried to write through ``request.dbsession``, which
    has no transaction to commit: a bug. Such a write belongs in a unit of work
    (:func:`appserver.models.units.writing`), or to an unsafe method."""


def transaction_wanted(request: Request) -> bool:
    """pyramid_tm's ``tm.activate_hook``: a transaction for unsafe methods only.

    A safe request is served without one: no transaction manager begun and committed on every
    GET, most of which never open a session at all. What such a request reads through
    ``request.dbsession`` comes from a read-only session closed when the request ends; the
    few writes a safe request makes (authentication's, the WebSudo window) are units of work.
    """
    environ = request.environ  # request.method reads it too, through a descriptor
    if environ.get("REQUEST_METHOD") in SAFE_METHODS:
        environ[READ_ONLY] = True
        return False
    return True


def is_read_only(request: Request) -> bool:
    """True for a safe request served without a transaction (see :func:`transaction_wanted`)."""
    return request.environ.get(READ_ONLY, False)


def abandon_request_transaction(request: Request) -> None:
    """After a database failure, make sure the request commits nothing and can still answer:
    pyramid_tm is left a doomed transaction to abort; a safe request's read-only session is
    closed (its objects keep their loaded state), so that nothing reads through a failed one."""
    if is_read_only(request):
        session = request.__dict__.get("dbsession")
        if session is not None:
            _close_quietly(session)
        return
    manager = request.tm
    try:
        manager.abort()
    except Exception:  # the connection is already broken; nothing left to undo
        log.debug("abort after database failure failed", exc_info=True)
    manager.begin()
    manager.doom()


def _close_quietly(session: Session) -> None:
    try:
        session.close()
    except Exception:  # a connection the database dropped: the pool discards it
        log.debug("closing a read-only session failed", exc_info=True)


def is_transient(error: BaseException) -> bool:
    """True for an error that the same request may not meet again a moment later: SQLite
    busy, a PostgreSQL serialization failure or deadlock, a connection that was cut (the
    pool throws it away). pyramid_retry runs the whole request again for these."""
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    message = str(error.orig).lower()
    if "database is locked" in message or "database is busy" in message:
        return True
    sqlstate = getattr(error.orig, "sqlstate", None) or ""
    # 40: transaction rollback (serialization, deadlock); 08: connection exception;
    # 57P01-03: the server is shutting down or restarting; 25P03: the server ended a
    # transaction left idle (appserver.database.idle_in_transaction_timeout: this process
    # was frozen), nothing of it committed.
    return sqlstate.startswith(("40", "08", "57P0", "25P03"))


def transient_kind(error: BaseException) -> str:
    """For the log line of a request run again: which transient error it met, so that an
    operator tells a busy SQLite, a deadlock and a lost connection apart (psycopg names its
    errors by SQLSTATE: ``DeadlockDetected (40P01)``)."""
    orig = getattr(error, "orig", None)
    if orig is None:
        return type(error).__name__
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate:
        return f"{type(orig).__name__} ({sqlstate})"
    reason = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {reason[0]}" if reason else type(orig).__name__


def commit_in_doubt(request: Request, error: BaseException) -> bool:
    """True when the request's COMMIT was sent and the connection was lost before its answer
    came: the database may have committed the request's writes, or not, and nobody here
    can tell. Running such a request again is not safe (a password change run again finds
    its own session revoked; an issue would be created twice). A statement of the flush that
    failed, a serialization failure or deadlock at COMMIT (class 40: rolled back) and
    SQLite's errors (reported by the library itself, not over a network) are not in doubt."""
    session = request.__dict__.get("dbsession")
    if session is None or not session.info.get(COMMITTING):
        return False
    if not isinstance(error, sa_exc.DBAPIError) or error.statement is not None:
        return False  # a statement failed, before the COMMIT was sent
    sqlstate = getattr(error.orig, "sqlstate", None) or ""
    if sqlstate.startswith("40"):
        return False
    return error.connection_invalidated or sqlstate.startswith(("08", "57P0"))


def retry_transient(request: Request, error: BaseException) -> bool:
    """Mark a transient error for pyramid_retry: True when the request will run again (so
    the caller lets the error propagate), False on the last attempt (answer with a 503).
    The exception view asks :func:`commit_in_doubt` first: such a request is never run twice."""
    from pyramid_retry import is_last_attempt, mark_error_retryable

    if not is_transient(error):
        return False
    mark_error_retryable(error)
    return not is_last_attempt(request)


def _sqlite_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin, so that
    # SAVEPOINT works (tests) and BEGIN is explicit; see SQLAlchemy's pysqlite notes.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # A writer waits up to 10 s for the one write lock instead of failing at once.
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL's safe setting: durable at checkpoints
    # Which file this connection opened: a file replaced or deleted under the running server
    # (a restore by mv, a cleanup) is not what its path now names (health.py asks).
    for _, name, path in cursor.execute("PRAGMA database_list").fetchall():
        if name == "main" and path:
            try:
                found = os.stat(path)
            except OSError:
                break
            connection_record.info[SQLITE_FILE] = (path, found.st_dev, found.st_ino)
    cursor.close()


#: In a SQLite connection's ``info``: (path, device, inode) of the file it opened.
SQLITE_FILE = "appserver.sqlite_file"


def sqlite_file_changed(connection: Connection) -> str | None:
    """"deleted" or "replaced" when the file this connection opened is no longer the one at
    its path; None when it is, and for anything but a SQLite file."""
    recorded = connection.connection.info.get(SQLITE_FILE)
    if recorded is None:
        return None
    path, device, inode = recorded
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return "deleted"
    return None if (found.st_dev, found.st_ino) == (device, inode) else "replaced"


def _sqlite_begin(connection: Connection) -> None:
    # A transaction that will write takes the write lock when it begins (BEGIN IMMEDIATE):
    # a deferred transaction that read first cannot take it later if another connection
    # wrote in between (SQLITE_BUSY at once, whatever the busy timeout).
    mode = connection.get_execution_options().get(SQLITE_BEGIN, "")
    if mode == AUTOCOMMIT:
        return  # reader(): each statement its own transaction (isolation_level is None)
    connection.exec_driver_sql(f"BEGIN {mode}".strip())


def _postgresql_connect_args(settings: dict[str, Any], in_url: Mapping[str, Any]) -> dict[str, Any]:
    """libpq's parameters from the settings, where the URL does not give its own."""
    from ..settings import setting

    arguments: dict[str, Any] = {}
    # Startup options of the connection: no SET, no round trip, and no transaction whose
    # rollback would undo them.
    options = []
    lock_timeout = setting(settings, "appserver.database.lock_timeout")
    if lock_timeout:
        options.append(f"-c lock_timeout={lock_timeout}")
    idle_timeout = setting(settings, "appserver.database.idle_in_transaction_timeout")
    if idle_timeout:
        options.append(f"-c idle_in_transaction_session_timeout={idle_timeout}")
    if options:
        arguments["options"] = " ".join(options)
    connect_timeout = setting(settings, "appserver.database.connect_timeout")
    if connect_timeout:
        arguments["connect_timeout"] = connect_timeout
    network_timeout = setting(settings, "appserver.database.network_timeout")
    if network_timeout:
        # A server that stops acknowledging what is sent (tcp_user_timeout) and an idle
        # pooled connection whose peer is gone (keepalives) both end in an error the pool and
        # pyramid_retry know, within about network_timeout seconds: a 503, not a hang.
        probe = max(1, network_timeout // 3)
        arguments.update(tcp_user_timeout=network_timeout * 1000, keepalives=1,
                         keepalives_idle=probe, keepalives_interval=probe, keepalives_count=3)
    return {key: value for key, value in arguments.items() if key not in in_url}


def get_engine(settings: dict[str, Any], prefix: str = "sqlalchemy.") -> Engine:
    options: dict[str, Any] = {}
    url = str(settings.get(prefix + "url", ""))
    if url.startswith("postgresql"):
        options["connect_args"] = _postgresql_connect_args(settings, make_url(url).query)
    # hide_parameters: SQL logging (sqlalchemy.engine at INFO) and database error messages
    # never show bound values -- password hashes, token hashes, usernames typed as passwords.
    try:
        engine = engine_from_config(settings, prefix, hide_parameters=True, **options)
    except TypeError as error:  # an option create_engine does not know: sqlalchemy.poolsize
        from ..settings import ConfigurationError

        named = re.search(r"Invalid argument\(s\) '?(.+?)'? sent to", str(error))
        option = prefix + named.group(1).replace("','", ", " + prefix) if named else prefix + "*"
        raise ConfigurationError(
            f"{option}: unknown setting; SQLAlchemy's create_engine has no such option "
            "(docs/configuration.md lists the ones this project sets)"
        ) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


_VARIANTS: WeakKeyDictionary[Engine, dict[str, Engine]] = WeakKeyDictionary()
AUTOCOMMIT = "AUTOCOMMIT"


def _variant(engine: Engine, name: str, **options: Any) -> Engine:
    """``engine.execution_options(**options)`` (same pool), made once per engine and name."""
    variants = _VARIANTS.setdefault(engine, {})
    if name not in variants:
        variants[name] = engine.execution_options(**options)
        note_variant(variants[name], engine)
    return variants[name]


def writer(bind: Engine | Connection) -> Engine | Connection:
    """The bind for a transaction that will write: on SQLite it begins with the write lock.
    (A test's connection is already in a transaction: its units are savepoints.)"""
    if not isinstance(bind, Engine) or bind.dialect.name != "sqlite":
        return bind
    return _variant(bind, "writer", **{SQLITE_BEGIN: "IMMEDIATE"})


def reader(bind: Engine | Connection) -> Engine | Connection:
    """The bind for a single SELECT outside any transaction: no BEGIN before it and no
    ROLLBACK after it (PostgreSQL: two round trips of three). One statement is a transaction
    of its own and sees what it would see at READ COMMITTED; nothing it reads is locked."""
    if not isinstance(bind, Engine):
        return bind
    if bind.dialect.name == "sqlite":
        # Not SQLAlchemy's AUTOCOMMIT: its reset would undo _sqlite_connect's setting.
        return _variant(bind, "reader", **{SQLITE_BEGIN: AUTOCOMMIT})
    return _variant(bind, "reader", isolation_level=AUTOCOMMIT)


def get_session_factory(engine: Engine | Connection) -> sessionmaker[Session]:
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    # Listeners once here, not per request (each event.listen costs ~40 us).
    register_once(factory)  # zope.sqlalchemy's, for sessions made with a transaction manager
    event.listen(factory, "after_begin", _note_begun)
    event.listen(factory, "before_commit", _note_committing)
    event.listen(factory, "before_flush", _refuse_read_only_flush)
    event.listen(factory, "do_orm_execute", _refuse_read_only_dml)
    return factory


def _refuse_read_only_flush(session: Session, flush_context: Any, instances: Any) -> None:
    if session.info.get(READ_ONLY):
        raise ReadOnlySessionError(
            f"a safe request tried to flush changes through request.dbsession: "
            f"{len(session.new)} new, {len(session.dirty)} changed, {len(session.deleted)} deleted"
        )


def _refuse_read_only_dml(state: Any) -> None:
    if state.session.info.get(READ_ONLY) and (state.is_insert or state.is_update or state.is_delete):
        raise ReadOnlySessionError(f"a safe request tried to write through request.dbsession: {state.statement}")


def read_only_session(session_factory: sessionmaker[Session], request: Request) -> Session:
    """A safe request's ``request.dbsession``: it reads, refuses writes (ReadOnlySessionError)
    and is closed when the request ends (its transaction, if it began, is rolled back)."""
    # The session does not keep the request (the request keeps it: request.dbsession), or
    # the pair would be a reference cycle only the garbage collector frees.
    session = session_factory(info={READ_ONLY: True})
    request.add_finished_callback(lambda request: _close_read_only(session))
    return session


def _close_read_only(session: Session) -> None:
    if session.new or session.deleted or any(session.is_modified(obj) for obj in session.dirty):
        # Never flushed, hence never refused: changes a GET view made and would lose.
        log.error("a safe request left changes in request.dbsession; they were discarded")
    _close_quietly(session)


def get_tm_session(
    session_factory: sessionmaker[Session],
    transaction_manager: TransactionManager,
    bind: Engine | Connection | None = None,
) -> Session:
    """A session joined to ``transaction_manager``: pyramid_tm commits or aborts it. (Not
    the cookiecutter's ``info["request"]``: nothing reads it, and request.dbsession would
    make it a reference cycle.)"""
    options: dict[str, Any] = {"info": {MANAGER_KEY: transaction_manager}}
    if bind is not None:
        options["bind"] = bind
    return session_factory(**options)


def _note_begun(session: Session, transaction: Any, connection: Connection) -> None:
    session.info["begun"] = True
    session.info.pop(COMMITTING, None)  # a session used again (tests): a new transaction


def _note_committing(session: Session) -> None:
    # Fired by the commit pyramid_tm makes (zope.sqlalchemy's tpc_vote), after the flush of
    # tpc_begin: what fails from here on is the COMMIT, or a flush with nothing left to do.
    session.info[COMMITTING] = True


def includeme(config: Configurator) -> None:
    settings = config.get_settings()
    settings["tm.manager_hook"] = "pyramid_tm.explicit_manager"
    # pyramid_tm would otherwise ask for request.authenticated_userid on every request,
    # which for Basic auth means a password hash per request.
    settings["tm.annotate_user"] = False
    settings["tm.activate_hook"] = transaction_wanted  # none for GET, HEAD, OPTIONS
    config.include("pyramid_tm")
    config.include("pyramid_retry")

    engine = settings.get("appserver.dbengine") or get_engine(settings)
    session_factory = get_session_factory(engine)
    config.registry.dbengine = engine
    config.registry["dbsession_factory"] = session_factory

    # Units of work outside the request's transaction (see units.py): never joined to it.
    config.registry["unit_session_factory"] = get_session_factory(engine)

    def dbsession(request: Request) -> Session:
        """The request's unit of work: pyramid_tm commits it with the response, or aborts it.
        A safe request served without a transaction reads through a read-only session."""
        # Tests hand in their own session through the environ (one transaction per test).
        session = request.environ.get("app.dbsession")
        if session is None:
            if is_read_only(request):
                session = read_only_session(session_factory, request)
            else:
                bind = session_factory.kw["bind"]
                if request.method not in SAFE_METHODS:
                    bind = writer(bind)
                session = get_tm_session(session_factory, request.tm, bind=bind)
            from .units import attach_identity

            attach_identity(request, session)
        return session

    config.add_request_method(dbsession, reify=True)
