"""The credential lookups on the driver's cursor (appserver/models/prepared.py): the same
values as SQLAlchemy's own execution, and SQLAlchemy's errors when the database goes away."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import insert, text

from appserver.models import User, UserSession, get_engine, prepared, reader
from appserver.security import sessions

from .support import DriverStatements, fresh_database

NOW = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=timezone.utc)


@pytest.fixture
def engine(live_database_url):
    engine = get_engine({"sqlalchemy.url": fresh_database(live_database_url), "sqlalchemy.pool_size": "1",
                         "sqlalchemy.max_overflow": "0"})
    with engine.begin() as connection:
        user_id = connection.execute(
            insert(User).values(
                username="fred", username_key="fred", display_name="Fred", email="fred@example.com",
                password_hash="$argon2id$not-a-real-hash", active=True, admin=False, created_at=NOW,
                password_changed_at=NOW,
            ).returning(User.id)
        ).scalar_one()
        for name, revoked in (("live", None), ("revoked", NOW + timedelta(seconds=5))):
            connection.execute(
                insert(UserSession).values(
                    token_hash=name.ljust(64, "0"), user_id=user_id, created_at=NOW, last_seen_at=NOW,
                    expires_at=NOW + timedelta(hours=12), revoked_at=revoked, user_agent="test",
                    remote_addr="127.0.0.1",
                )
            )
    yield reader(engine)
    engine.dispose()


def through_sqlalchemy(engine, token_hash):
    with engine.connect() as connection:
        return connection.execute(sessions._LOOKUP.statement, {"token_hash": token_hash}).first()


@pytest.mark.parametrize("name", ["live", "revoked"])
def test_the_driver_answers_what_sqlalchemy_answers(engine, name):
    token_hash = name.ljust(64, "0")
    fast = sessions._LOOKUP.first(engine, {"token_hash": token_hash})
    slow = through_sqlalchemy(engine, token_hash)
    assert fast == tuple(slow)
    assert [type(value) for value in fast] == [type(value) for value in slow]
    found = dict(zip(slow._fields, fast))
    assert found["s_created_at"] == NOW and found["s_created_at"].tzinfo is not None
    assert found["u_active"] is True and found["u_admin"] is False
    assert (found["s_revoked_at"] is None) == (name == "live")


def test_nothing_found_is_none(engine):
    assert sessions._LOOKUP.first(engine, {"token_hash": "f" * 64}) is None


def test_the_lookup_is_one_statement_without_a_transaction(engine):
    with DriverStatements(engine) as driver:
        assert sessions._LOOKUP.first(engine, {"token_hash": "live".ljust(64, "0")}) is not None
    assert driver.verbs() == ["SELECT"], driver.seen
    if engine.dialect.name == "postgresql":
        assert driver.seen[0][1] is True  # autocommit: psycopg sends no BEGIN
    pooled = engine.raw_connection()  # the connection went back to the pool as it came
    try:
        assert getattr(pooled.driver_connection, "autocommit", False) is False
    finally:
        pooled.close()


def kill_the_reads_connection(engine):
    """The connection the lookups read on dies: PostgreSQL's backends are terminated, as
    when the server restarts; SQLite's connection is closed behind the reader's back."""
    if engine.dialect.name == "postgresql":
        with get_engine({"sqlalchemy.url": engine.url.render_as_string(hide_password=False)}).connect() as other:
            killed = other.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND pid <> pg_backend_pid()")
            ).all()
        assert killed
    else:
        idle = prepared._readers_of(engine).idle
        assert len(idle) == 1
        idle[0].close()


def test_a_dead_connection_is_discarded_and_the_read_answers(engine):
    live = "live".ljust(64, "0")
    assert sessions._LOOKUP.first(engine, {"token_hash": live}) is not None  # a reader made
    kill_the_reads_connection(engine)
    assert sessions._LOOKUP.first(engine, {"token_hash": live})[1] == live
    assert sessions._LOOKUP.first(engine, {"token_hash": live})[1] == live


@contextmanager
def reads_refused(engine):
    """The next read fails for a reason other than a dead connection: PostgreSQL's lock
    timeout behind a table lock held elsewhere; SQLite's authorizer saying no."""
    if engine.dialect.name == "postgresql":
        locker = get_engine({"sqlalchemy.url": engine.url.render_as_string(hide_password=False)})
        with locker.connect() as other:
            other.execute(text("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE"))  # until rollback
            yield
            other.rollback()
        locker.dispose()
    else:
        import sqlite3

        from sqlalchemy import event

        def deny(dbapi_connection, record):
            dbapi_connection.set_authorizer(lambda *args: sqlite3.SQLITE_DENY)

        engine.dispose()  # the lookups' connections too: the next one is made, and denied
        event.listen(engine, "connect", deny)
        yield
        event.remove(engine, "connect", deny)


def test_another_driver_error_is_sqlalchemy_s_at_once_and_the_connection_discarded(live_database_url):
    url = fresh_database(live_database_url)
    engine = reader(get_engine({
        "sqlalchemy.url": url, "sqlalchemy.pool_size": "1", "sqlalchemy.max_overflow": "0",
        "appserver.database.lock_timeout": "200",  # ms, PostgreSQL
    }))
    live = "live".ljust(64, "0")
    try:
        assert sessions._LOOKUP.first(engine, {"token_hash": live}) is None  # pooled
        with DriverStatements(engine) as driver:
            assert sessions._LOOKUP.first(engine, {"token_hash": live}) is None  # traced
            driver.seen.clear()
            with reads_refused(engine):
                with pytest.raises(sa_exc.DBAPIError) as refused:
                    sessions._LOOKUP.first(engine, {"token_hash": live})
            assert not refused.value.connection_invalidated
            if engine.dialect.name == "postgresql":  # one try, not a second wait
                assert driver.verbs() == ["SELECT"], driver.seen
            assert sessions._LOOKUP.first(engine, {"token_hash": live}) is None  # a new connection
    finally:
        engine.dispose()


def test_a_database_that_cannot_be_reached_raises_sqlalchemy_s_error(live_database_url, tmp_path: Path):
    if live_database_url.startswith("postgresql"):
        unreachable = "postgresql+psycopg://postgres@127.0.0.1:9/nowhere"  # the discard port
    else:
        unreachable = f"sqlite:///{tmp_path / 'missing-folder' / 'db.sqlite'}"
    engine = reader(get_engine({"sqlalchemy.url": unreachable}))
    with pytest.raises(sa_exc.OperationalError):
        sessions._LOOKUP.first(engine, {"token_hash": "f" * 64})


def test_sqlite_text_with_an_offset_of_its_own_is_read_in_utc():
    """The stored form is naive UTC text; text that names an offset (written by another tool)
    is converted, not misread."""
    from sqlalchemy.dialects import sqlite

    from appserver.models.meta import UTCDateTime

    process = UTCDateTime().result_processor(sqlite.dialect(), None)
    assert process(None) is None
    assert process("2026-11-30 12:00:00.123456") == NOW
    assert process("2026-11-30 12:00:00.123456").tzinfo is timezone.utc
    assert process("2026-11-30 14:00:00.123456+02:00") == NOW
    assert process("2026-11-30 14:00:00.123456+02:00").tzinfo == timezone.utc


def test_the_reads_share_one_reader_and_leave_the_pool_alone(engine):
    """Read after read on one thread: one driver connection, made once, never checked out of
    the pool again (a checkout and its return cost more than the read)."""
    live = "live".ljust(64, "0")
    with DriverStatements(engine) as driver:
        for _ in range(5):
            assert sessions._LOOKUP.first(engine, {"token_hash": live}) is not None
        readers = prepared._readers_of(engine)
        assert len(readers.idle) == 1
        assert engine.pool.checkedout() == 0
    assert driver.verbs() == ["SELECT"] * 5


def test_dispose_closes_the_readers_idle_and_in_use(engine):
    live = "live".ljust(64, "0")
    readers = prepared._readers_of(engine)
    in_use = readers.take()  # another thread's, in the middle of its read
    assert sessions._LOOKUP.first(engine, {"token_hash": live}) is not None
    idle = readers.idle[0]
    assert idle is not in_use
    engine.dispose()
    assert readers.idle == []
    readers.give_back(in_use)
    assert readers.idle == []
    for connection in (idle, in_use):
        with pytest.raises(Exception):  # closed: each driver says so in its own words
            connection.cursor().execute("SELECT 1")
    assert sessions._LOOKUP.first(engine, {"token_hash": live}) is not None  # a new one
    assert len(readers.idle) == 1


def test_a_reader_given_back_during_a_dispose_is_not_handed_out(engine):
    """A thread gives its reader back while another disposes the engine, after the dispose
    emptied the idle ones: the next take closes it and makes a new one."""
    readers = prepared._readers_of(engine)
    old = readers.take()
    engine.dispose()
    readers.idle.append(old)  # where the racing give_back leaves it
    fresh = readers.take()
    assert fresh is not old
    with pytest.raises(Exception):
        old.cursor().execute("SELECT 1")
    readers.give_back(fresh)
    assert readers.idle == [fresh]
