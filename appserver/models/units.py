"""Short units of work beside the request's transaction.

The request's own writes go into one transaction that pyramid_tm commits with the response or
aborts with an error, never half-way. Authentication needs two other kinds of work: reads made
before that transaction begins, and writes that must stand whatever the request does next and
that every other request, in every process, must see at once (the lock-out's reservation and
failure counts, the audit of a failed login, a remember-me rotation and the session it starts,
a session touch). Each :func:`unit` is a session and transaction of its own, on its own
connection, committed at the end of its block.

The order is the rule: a request does its units first and its own writes after. A unit that
started once the request's transaction holds a connection could wait for that transaction (the
SQLite write lock, a PostgreSQL row lock) while it waits for the unit: :func:`unit` refuses it.
A safe request (GET, HEAD, OPTIONS) has no transaction of its own, only a read-only session
(``appserver.models.transaction_wanted``) that holds no lock (plain SELECTs; SQLite in WAL mode
lets a writer in beside a reader): a unit may start after it has read, and
:func:`writing` is where such a request writes.

A unit's COMMIT that loses its connection is in doubt, like the request's own, but unlike the
request's own (``appserver.models.commit_in_doubt``) it does not stop pyramid_retry from
running the request again: what a unit writes is a count, an audit row or a touch, which a
second attempt at worst repeats (one failure counted twice brings a lock-out one attempt
early), while refusing the attempt would turn a lost acknowledgement into a failed login. The
one unit whose repetition would mislead, the remember-me rotation, records what it committed
in the environ before its COMMIT (``security.policy.ROTATED_KEY``). A unit that fails before
or at its COMMIT has told the client nothing yet (the answer comes after the block): a wrong
password whose count was rolled back is not reported as wrong, and the attempt that runs
again counts it.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from pyramid.request import Request
from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session


class UnitOrderError(RuntimeError):
    """A unit of work was started after the request's own transaction began (a bug)."""


@contextmanager
def unit(request: Request, *, write: bool = False, after_commit: bool = False) -> Iterator[Session]:
    """A session committed at the end of the block (rolled back if it raises).

    ``write``: the unit will write, so on SQLite it takes the write lock when it begins and
    waits for it (busy timeout) rather than failing half-way. Without it, the unit only
    reads and each statement is a transaction of its own (``appserver.models.reader``: no
    BEGIN and COMMIT round trips around a lookup); a row lock needs ``write``.
    ``after_commit``: run by a hook after the request's transaction committed, which then
    holds nothing, and may come after it.
    """
    from . import READ_ONLY, reader, writer

    request_session = request.__dict__.get("dbsession")
    info = request_session.info if request_session is not None else {}
    if info.get("begun") and not info.get(READ_ONLY) and not after_commit:
        raise UnitOrderError(
            "a security unit of work started after the request's transaction began: "
            "check credentials before the request reads or writes through request.dbsession"
        )
    factory = request.registry["unit_session_factory"]
    bind = factory.kw["bind"]
    session = factory(bind=writer(bind) if write else reader(bind))
    try:
        yield session
        # A unit that never used its session has nothing to commit.
        if session.in_transaction() or session.new or session.dirty or session.deleted:
            session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def read_bind(request: Request) -> Engine | Connection:
    """Where authentication reads outside any unit: the units' engine, a connection of its
    own per statement, no transaction around it (``appserver.models.reader``). A plain
    SELECT takes no lock (PostgreSQL's MVCC, SQLite in WAL mode), so unlike a unit it may
    come in any order."""
    from . import reader

    return reader(request.registry["unit_session_factory"].kw["bind"])


@contextmanager
def writing(request: Request) -> Iterator[Session]:
    """Where this request writes: its own transaction (committed with the response), or for
    a safe request, which has none, a unit of work committed at the end of the block."""
    from . import is_read_only

    if is_read_only(request):
        with unit(request, write=True) as session:
            yield session
    else:
        yield request.dbsession


T = TypeVar("T")


def attach(session: Session, obj: T) -> T:
    """Hand an object loaded by a unit to the request's session, without SQL, so that a view
    can change it and pyramid_tm commits the change. The object itself is attached; if the
    session holds that row already, the one it holds is brought up to date and returned."""
    if obj is None or obj in session:
        return obj
    key = inspect(obj).identity_key
    if key is not None and key in session.identity_map:
        return session.merge(obj, load=False)
    session.add(obj)
    return obj


def attach_identity(request: Request, session: Session) -> None:
    """When the request's session is created, adopt what authentication loaded."""
    auth = request.registry.security_policy.computed(request)
    if auth is not None and auth.identity is not None:
        attach(session, auth.identity.user)
        attach(session, auth.identity.session)
