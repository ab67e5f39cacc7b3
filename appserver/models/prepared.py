"""The credential lookups every authenticated request makes, at the driver's own speed.

A cookie, Basic or Bearer request reads its credential with one indexed SELECT. Run through
SQLAlchemy's ``Connection``, that SELECT was about 40 % of the whole cookie request
(measured, docs/performance.md): the execution context and its events, result metadata
built from the cursor's description (psycopg makes a Column object per column, every time),
and on PostgreSQL the set-and-reset of autocommit through the isolation-level machinery. The
database's own work is a few microseconds on SQLite and one round trip on PostgreSQL.

A :class:`PreparedRead` keeps what SQLAlchemy is for and drops only the execution path:
SQLAlchemy compiles the statement (once per engine), makes and sets up the connections, and
converts the values with the column types' own result processors; the statement itself runs
on a driver connection's cursor, in autocommit (one statement is a transaction of its own,
as ``appserver.models.reader`` has it). The connections are the engine's readers
(:class:`_Readers`): made by the pool, detached from it, and handed from read to read, at
most one per thread reading at once. psycopg prepares the statement on the server after a
few runs.

Errors stay SQLAlchemy's: a driver error closes the reader. When the server went away
(a dropped connection, a restart), the read runs once more through ``Connection``, which
reads on a live connection or invalidates the pool and raises the error marked as a
disconnect, for pyramid_retry, exactly as before; a read twice is harmless. Any other error
(a refused connection, a lock timeout, a busy SQLite file) is raised at once, wrapped as
SQLAlchemy wraps it, without a second wait.

The price: the fast path is invisible to the engine's ``before_cursor_execute`` events.
Tests count statements at the driver instead (``tests/support.py``, ``DriverStatements``).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool
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
    readers = _readers_of(engine)
    if readers is None:
        return _run_pooled(engine, plan, arguments)
    connection = readers.take()
    try:
        row = _fetch(engine, connection, plan, arguments)
    except BaseException:
        readers.discard(connection)  # whatever state the driver is in, it is not used again
        raise
    readers.give_back(connection)
    return row


def _run_pooled(engine: Engine, plan: _Plan, arguments: Any) -> Sequence[Any] | None:
    """The read on a connection checked out of the pool for it (a pool that is not a
    :class:`QueuePool`: SQLite in memory, whose every connection is another database)."""
    connection = engine.raw_connection()
    try:
        driver = connection.driver_connection
        if plan.toggle_autocommit:
            driver.autocommit = True  # no BEGIN before the SELECT, no ROLLBACK after it
        row = _fetch(engine, connection.dbapi_connection, plan, arguments)
        if plan.toggle_autocommit:
            driver.autocommit = False  # as SQLAlchemy expects it back from the pool
    except BaseException:
        # Whatever state the driver is in, it does not go back to the pool.
        connection.invalidate()
        raise
    finally:
        connection.close()
    return row


def _fetch(engine: Engine, connection: Any, plan: _Plan, arguments: Any) -> Sequence[Any] | None:
    """The first row of the plan's statement on the driver's ``connection``; a driver error
    that says the server went away is :class:`_Disconnected`."""
    cursor = None
    try:
        cursor = connection.cursor()
        try:
            cursor.execute(plan.sql, arguments)
            return cursor.fetchone()
        finally:
            cursor.close()
    except engine.dialect.loaded_dbapi.Error as error:
        # Asked before the connection is closed (psycopg's answer depends on whether the
        # connection is closed or broken).
        if engine.dialect.is_disconnect(error, connection, cursor):
            raise _Disconnected() from error
        raise


class _Readers:
    """The driver connections an engine's credential lookups run on, each used by one thread
    at a time.

    Each is made by the engine's pool (its connect events set it up: SQLite's pragmas) and
    then detached from it (``PoolProxiedConnection.detach``), put in autocommit once, and
    handed from read to read. A checkout from the pool and its return, with their events and
    reset, were about a tenth of a cookie request over HTTP (docs/performance.md). There are
    at most as many as threads read at once (a process's waitress threads), beside the pool's
    own. One that fails a read is closed, never handed out again; ``engine.dispose()`` closes
    the idle ones, and those in use when they come back."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.idle: list[Any] = []  # list.append and list.pop are atomic: no lock needed
        self.generation = 0
        #: id of each connection handed out -> the generation it was made in.
        self._generations: dict[int, int] = {}
        event.listen(engine, "engine_disposed", self.close_idle)

    def take(self) -> Any:
        while True:
            try:
                connection = self.idle.pop()
            except IndexError:
                break
            if self._generations.get(id(connection)) == self.generation:
                return connection
            self.discard(connection)  # given back while a dispose ran
        proxied = self.engine.raw_connection()
        connection = proxied.dbapi_connection
        try:
            proxied.detach()
            if self.engine.dialect.name != "sqlite":  # SQLite's are in autocommit already
                connection.autocommit = True  # no BEGIN before a SELECT, no ROLLBACK after
        except BaseException:
            _close(connection)
            raise
        self._generations[id(connection)] = self.generation
        return connection

    def give_back(self, connection: Any) -> None:
        if self._generations.get(id(connection)) == self.generation:
            self.idle.append(connection)
        else:
            self.discard(connection)

    def discard(self, connection: Any) -> None:
        self._generations.pop(id(connection), None)
        _close(connection)

    def close_idle(self, engine: Engine | None = None) -> None:
        self.generation += 1
        while True:
            try:
                self.discard(self.idle.pop())
            except IndexError:
                return


def _close(connection: Any) -> None:
    try:
        connection.close()
    except Exception:  # a connection that is broken already
        pass


_READERS: WeakKeyDictionary[Engine, _Readers | None] = WeakKeyDictionary()
_READERS_LOCK = threading.Lock()


def _readers_of(bind: Engine) -> _Readers | None:
    """The readers of the engine ``bind`` is a variant of (``Engine.execution_options``
    shares the engine's pool), or None for a pool whose connections must stay in it."""
    try:
        return _READERS[bind]
    except KeyError:
        pass
    with _READERS_LOCK:
        if bind not in _READERS:
            root = _ROOTS.get(bind, bind)
            if root not in _READERS:
                _READERS[root] = _Readers(root) if isinstance(root.pool, QueuePool) else None
            _READERS[bind] = _READERS[root]
        return _READERS[bind]


#: variant -> the engine it was made from (appserver.models._variant notes each).
_ROOTS: WeakKeyDictionary[Engine, Engine] = WeakKeyDictionary()


def note_variant(variant: Engine, root: Engine) -> None:
    """``variant`` is ``root.execution_options(...)``: its reads use ``root``'s readers, which
    ``root.dispose()`` closes (the event is the root's own)."""
    _ROOTS[variant] = root
