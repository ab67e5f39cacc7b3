"""Database wiring: engine, session factory and ``request.dbsession`` (the wiki2 pattern).

Importing this package imports every model, so ``Base.metadata`` is complete for alembic.
"""
from __future__ import annotations

from typing import Any

import zope.sqlalchemy
from pyramid.config import Configurator
from pyramid.request import Request
from sqlalchemy import engine_from_config, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, configure_mappers, sessionmaker
from transaction import TransactionManager

from .auth_event import AuthEvent  # noqa: F401
from .issue import Issue, Project  # noqa: F401
from .login_throttle import LoginThrottle  # noqa: F401
from .meta import Base, metadata  # noqa: F401
from .personal_token import PersonalToken  # noqa: F401
from .remember_token import RememberToken  # noqa: F401
from .user import User, canonical_username  # noqa: F401
from .user_session import UserSession  # noqa: F401

configure_mappers()

#: Errors that mean "the database cannot be reached right now" (down, restarting, pool
#: exhausted): answered with 503 and Retry-After, never with anonymous content.
DATABASE_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


def _sqlite_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin, so that
    # SAVEPOINT works (tests) and BEGIN is explicit; see SQLAlchemy's pysqlite notes.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN")


def get_engine(settings: dict[str, Any], prefix: str = "sqlalchemy.") -> Engine:
    # hide_parameters: SQL logging (sqlalchemy.engine at INFO) and database error messages
    # never show bound values -- password hashes, token hashes, usernames typed as passwords.
    engine = engine_from_config(settings, prefix, hide_parameters=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def get_session_factory(engine: Engine | Connection) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def get_tm_session(
    session_factory: sessionmaker[Session],
    transaction_manager: TransactionManager,
    request: Request | None = None,
) -> Session:
    """A session joined to ``transaction_manager``: pyramid_tm commits or aborts it."""
    dbsession = session_factory(info={"request": request})
    zope.sqlalchemy.register(dbsession, transaction_manager=transaction_manager)
    return dbsession


def includeme(config: Configurator) -> None:
    settings = config.get_settings()
    settings["tm.manager_hook"] = "pyramid_tm.explicit_manager"
    # pyramid_tm would otherwise ask for request.authenticated_userid on every request,
    # which for Basic auth means a password hash per request.
    settings["tm.annotate_user"] = False
    config.include("pyramid_tm")
    config.include("pyramid_retry")

    engine = settings.get("appserver.dbengine") or get_engine(settings)
    session_factory = get_session_factory(engine)
    config.registry.dbengine = engine
    config.registry["dbsession_factory"] = session_factory

    def dbsession(request: Request) -> Session:
        # Tests hand in their own session through the environ (one transaction per test).
        session = request.environ.get("app.dbsession")
        if session is None:
            session = get_tm_session(session_factory, request.tm, request=request)
        return session

    config.add_request_method(dbsession, reify=True)
