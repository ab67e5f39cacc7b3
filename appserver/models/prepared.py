"""The credential lookups every authenticated request makes, at the driver's own speed.

A cookie, Basic or Bearer request reads its credential with one indexed SELECT. Run through
SQLAlchemy's ``Connection``, that SELECT was about 40 % of the whole cookie request
(measured, docs/performance.md): the execution context and its events, result metadata
built from the cursor's description (psycopg makes a Column object per column, every time),
and on PostgreSQL the set-and-reset of autocommit through the isolation-level machinery. The
database's own work is a few microseconds on SQLite and one round trip on PostgreSQL.

A :class:`PreparedRead` keeps what SQLAlchemy is for and drops only the execution path:
SQLAlchemy compiles the statement (once per engine), owns the pool, and converts every value
with the column types' own result processors; the statement itself runs on the pooled
driver connection's cursor, in autocommit (one statement is a transaction of its own, as
``appserver.models.reader`` has it). psycopg prepares it on the server after a few runs.

Errors stay SQLAlchemy's: a driver error discards the connection. When the server went away
(a dropped connection, a restart), the read runs once more through ``Connection``, which
reads on a live connection or invalidates the pool and raises the error marked as a
disconnect, for pyramid_retry, exactly as before; a read twice is harmless. Any other error
(a refused connection, a lock timeout, a busy SQLite file) is raised at once, wrapped as
SQLAlchemy wraps it, without a second wait.

The price: the fast path is invisible to the engine's ``before_cursor_execute`` events.
Tests count statements at the driver instead (``tests/support.py``, ``DriverStatements``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class _Plan:
    """The statement compiled for one engine's dialect."""

    sql: str
    compiled: Any  # SQLAlchemy's Compiled: construct_params() for every run
    #: Bind names in the statement's order (a positional paramstyle: SQLite's qmark), or
    #: None for a named one (psycopg's pyformat takes the dict).
    positions: tuple[str, ...] | None
    bind_processors: Mapping[str, Processor]
    #: (position, processor) of the columns whose values are converted; the others (most:
    #: strings and integers) come back from the driver as they are.
    result_processors: tuple[tuple[int, Processor], ...]
    #: psycopg connections come out of the pool with autocommit off; SQLite's are in
    #: autocommit already (``appserver.models._sqlite_connect``).
    toggle_autocommit: bool


class PreparedRead:
    """One read-only SELECT: :meth:`first` runs it on an engine through the driver, or in a
    session's or connection's own transaction through SQLAlchemy."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._plans: WeakKeyDictionary[Engine, _Plan] = WeakKeyDictionary()

    def first(
        self, bind: Engine | Connection | Session, parameters: dict[str, Any]
    ) -> Sequence[Any] | None:
        """The first row, every value converted by its column's type; None without one."""
        if not isinstance(bind, Engine):  # a unit of work or a test's transaction
            return bind.execute(self.statement, parameters).first()
        plan = self._plans.get(bind)
        if plan is None:
            plan = self._plans[bind] = self._plan(bind)
        dialect = bind.dialect
        try:
            row = _run(bind, plan, parameters)
        except _Disconnected:
            # The server went away: SQLAlchemy's own path reads again, and when it meets
            # another dead connection it invalidates the whole pool (a restart killed them
            # all) and raises the error marked for pyramid_retry.
            with bind.connect() as connection:
                return connection.execute(self.statement, parameters).first()
        except dialect.loaded_dbapi.Error as error:
            # A refused connection, a lock timeout: raised as SQLAlchemy raises it, at once
            # (a second try would wait as long again before the 503).
            raise sa_exc.DBAPIError.instance(
                plan.sql, None, error, dialect.loaded_dbapi.Error, hide_parameters=True, dialect=dialect
            ) from error
        if row is None or not plan.result_processors:
            return row
        values = list(row)
        for position, process in plan.result_processors:
            value = values[position]
            if value is not None:
                values[position] = process(value)
        return tuple(values)

    def _plan(self, engine: Engine) -> _Plan:
        dialect = engine.dialect
        compiled = self.statement.compile(dialect=dialect)
        binds = compiled.binds
        bind_processors = {}
        for name, bind in binds.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                bind_processors[name] = process
        return _Plan(
            sql=compiled.string,
            compiled=compiled,
            positions=tuple(compiled.positiontup) if compiled.positional else None,
            bind_processors=bind_processors,
            result_processors=tuple(
                (position, process)
                for position, column in enumerate(self.statement.selected_columns)
                if (process := column.type.dialect_impl(dialect).result_processor(dialect, None)) is not None
            ),
            toggle_autocommit=dialect.name != "sqlite",
        )


class _Disconnected(Exception):
    """The driver's connection died under the read (the dialect's own judgement)."""


def _run(engine: Engine, plan: _Plan, parameters: dict[str, Any]) -> Sequence[Any] | None:
    values = plan.compiled.construct_params(parameters)
    for name, process in plan.bind_processors.items():
        values[name] = process(values[name])
    arguments: Any = values if plan.positions is None else [values[name] for name in plan.positions]
    connection = engine.raw_connection()
    cursor = None
    try:
        driver = connection.driver_connection
        if plan.toggle_autocommit:
            driver.autocommit = True  # no BEGIN before the SELECT, no ROLLBACK after it
        cursor = connection.cursor()
        try:
            cursor.execute(plan.sql, arguments)
            row = cursor.fetchone()
        finally:
            cursor.close()
        if plan.toggle_autocommit:
            driver.autocommit = False  # as SQLAlchemy expects it back from the pool
    except BaseException as error:
        # Asked before the connection is discarded, which closes it (psycopg's answer
        # depends on whether the connection is closed or broken).
        dialect = engine.dialect
        disconnected = isinstance(error, dialect.loaded_dbapi.Error) and dialect.is_disconnect(
            error, connection.dbapi_connection, cursor
        )
        # Whatever state the driver is in, it does not go back to the pool.
        connection.invalidate()
        if disconnected:
            raise _Disconnected() from error
        raise
    finally:
        connection.close()
    return row
