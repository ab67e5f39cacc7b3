"""The audit trail: one row per authentication event, with who, when, from where.

Rows never hold a password or a token; usernames are recorded only through the account
they belong to, since people type passwords into username fields.

Each row also becomes one line of the process log (logger ``appserver.audit``) once its
transaction commits: an operator reading journald sees the failed logins, lock-outs and
revocations as they happen, even after a database restore rolled the rows back (an outside
review: they were in the database only). A repeat counted on an earlier row adds no line.
"""
from __future__ import annotations

import enum
import logging
from datetime import timedelta

from pyramid.request import Request
from sqlalchemy import delete, event as sa_event, func, select, update
from sqlalchemy.orm import Session, SessionTransaction

from ..models import AuthEvent, User
from . import client


class Event(str, enum.Enum):
    LOGIN_SUCCEEDED = "login.succeeded"
    LOGIN_FAILED = "login.failed"
    LOGIN_DENIED = "login.denied"  # attempted during a cool-down
    LOCKED_OUT = "account.locked"
    UNLOCKED = "account.unlocked"
    LOGGED_OUT = "logout"
    SESSION_EXPIRED = "session.expired"  # a stale cookie was presented
    SESSION_REVOKED = "session.revoked"
    REMEMBER_USED = "remember.used"
    REMEMBER_THEFT = "remember.theft"
    REMEMBER_REUSED = "remember.reused"
    PASSWORD_CHANGED = "password.changed"
    USER_CREATED = "user.created"
    USER_DEACTIVATED = "user.deactivated"
    USER_ACTIVATED = "user.activated"
    TOKEN_CREATED = "token.created"
    TOKEN_REVOKED = "token.revoked"
    TOKEN_REFUSED = "token.refused"
    WEBSUDO_GRANTED = "websudo.granted"
    WEBSUDO_REFUSED = "websudo.refused"
    WEBSUDO_DROPPED = "websudo.dropped"


DESCRIPTIONS = {
    Event.LOGIN_SUCCEEDED: "Logged in",
    Event.LOGIN_FAILED: "Failed login",
    Event.LOGIN_DENIED: "Login refused during a lock-out",
    Event.LOCKED_OUT: "Locked out after failed logins",
    Event.UNLOCKED: "Unlocked",
    Event.LOGGED_OUT: "Logged out",
    Event.SESSION_EXPIRED: "Expired session used",
    Event.SESSION_REVOKED: "Session revoked",
    Event.REMEMBER_USED: "Logged in by remember-me",
    Event.REMEMBER_THEFT: "Remember-me token reused: all remembered logins revoked",
    Event.REMEMBER_REUSED: "A replaced remember-me token came back (a lost answer, or a copied cookie): that remembered login ended",
    Event.PASSWORD_CHANGED: "Password changed",
    Event.USER_CREATED: "Account created",
    Event.USER_DEACTIVATED: "Account deactivated",
    Event.USER_ACTIVATED: "Account activated",
    Event.TOKEN_CREATED: "Personal access token created",
    Event.TOKEN_REVOKED: "Personal access token revoked",
    Event.TOKEN_REFUSED: "Personal access token refused",
    Event.WEBSUDO_GRANTED: "Administrator access confirmed",
    Event.WEBSUDO_REFUSED: "Administrator access refused: wrong password",
    Event.WEBSUDO_DROPPED: "Administrator access dropped",
}

#: Events an operator should look at: logged as warnings, the others as information.
NOTABLE = frozenset({Event.LOCKED_OUT, Event.LOGIN_DENIED, Event.REMEMBER_THEFT, Event.REMEMBER_REUSED,
                     Event.WEBSUDO_REFUSED, Event.TOKEN_REFUSED})

log = logging.getLogger("appserver.audit")

#: In ``Session.info``: the log lines of the events added to the session's transaction.
_PENDING_LINES = "appserver.audit_lines"

#: Events a client can repeat at will (replaying a revoked cookie, retrying during a lock-out,
#: a script retrying a revoked token): written at most once per user, detail, address and
#: ``appserver.audit.collapse_seconds``; the repeats are counted on that row.
COLLAPSED = frozenset({Event.SESSION_EXPIRED, Event.LOGIN_DENIED, Event.TOKEN_REFUSED})


def record(
    request: Request,
    event: Event | str,
    user: User | None = None,
    detail: str = "",
    *,
    db: Session | None = None,
    collapse: bool | None = None,
) -> None:
    """Add an event to ``db``: the request's unit of work unless a unit of its own is given
    (events that must stand whatever the request does next: failed logins, lock-outs).

    ``collapse`` (default: whether ``event`` is in :data:`COLLAPSED`) counts an event
    identical to one already written within the collapse interval on that row instead of
    adding a row: for anything a client can repeat cheaply, so that replays cannot flood the
    trail. Any event name may be collapsed this way."""
    db = request.dbsession if db is None else db
    name = event.value if isinstance(event, Event) else event
    detail = detail[:255]
    user_id = user.id if user is not None else None
    if collapse is None:
        collapse = name in COLLAPSED
    address = client.address(request)
    if collapse and _count_repeat(request, db, name, user_id, detail, address):
        return
    db.add(
        AuthEvent(
            occurred_at=request.now,
            event=name,
            user_id=user_id,
            detail=detail,
            remote_addr=address,
            user_agent=client.user_agent(request),
            repeats=0,
        )
    )
    level = logging.WARNING if name in NOTABLE else logging.INFO
    who = user.username if user is not None else "-"
    within = db.get_nested_transaction() or db.get_transaction()
    db.info.setdefault(_PENDING_LINES, []).append((within, (level, name, who, address or "-", detail)))


@sa_event.listens_for(Session, "after_commit")
def _log_committed(session: Session) -> None:
    for _, (level, name, who, address, detail) in session.info.pop(_PENDING_LINES, ()):
        log.log(level, "%s user=%s address=%s detail=%r", name, who, address, detail)


@sa_event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    """Drop the lines of the transaction rolled back (a savepoint: only its own)."""
    pending = session.info.get(_PENDING_LINES)
    if pending:
        pending[:] = [(within, line) for within, line in pending
                      if not _inside(within, previous_transaction)]


@sa_event.listens_for(Session, "after_transaction_end")
def _forget_uncommitted(session: Session, transaction: SessionTransaction) -> None:
    """A session closed without a commit: its lines go (and with them the references to its
    transactions, which would keep the session in a reference cycle)."""
    if transaction.parent is None:
        session.info.pop(_PENDING_LINES, None)


def _inside(transaction: SessionTransaction | None, ancestor: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False


def _count_repeat(
    request: Request, db: Session, name: str, user_id: int | None, detail: str, address: str | None
) -> bool:
    """Add one to the newest identical event (from the same address: another one is another
    story) inside the interval; False when there is none."""
    interval = request.appserver_settings.audit_collapse_seconds
    if interval <= 0:
        return False
    since = request.now - timedelta(seconds=interval)
    if db.get_bind().dialect.name == "postgresql":
        # Parallel repeats would each find no row yet and each add one (16 uses of a revoked
        # token at once wrote 2-4 rows): the first takes this lock on the event's key until
        # its unit commits, the others wait for it and then count on its row. SQLite's
        # writing units are serialized already.
        key = "\x1f".join(("audit", name, str(user_id), detail, address or ""))
        db.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))
    same_user = AuthEvent.user_id.is_(None) if user_id is None else AuthEvent.user_id == user_id
    newest = (
        select(AuthEvent.id)
        .where(AuthEvent.event == name, same_user, AuthEvent.detail == detail,
               AuthEvent.remote_addr.is_(None) if address is None else AuthEvent.remote_addr == address,
               AuthEvent.occurred_at > since)
        .order_by(AuthEvent.occurred_at.desc(), AuthEvent.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    counted = db.execute(
        update(AuthEvent)
        .where(AuthEvent.id == newest)
        .values(repeats=AuthEvent.repeats + 1, last_occurred_at=request.now)
        .execution_options(synchronize_session=False)
    ).rowcount
    return counted > 0


def purge_batch(request: Request, batch_size: int) -> int:
    """Delete up to ``batch_size`` events older than ``appserver.audit.retention_days``;
    the caller commits each batch (``appserver CONFIG purge-events``)."""
    horizon = request.now - timedelta(days=request.appserver_settings.audit_retention_days)
    ids = list(
        request.dbsession.scalars(
            select(AuthEvent.id).where(AuthEvent.occurred_at < horizon).limit(batch_size)
        )
    )
    if ids:
        request.dbsession.execute(delete(AuthEvent).where(AuthEvent.id.in_(ids)))
    return len(ids)


def recent(request: Request, *, user_id: int | None = None, limit: int = 20) -> list[AuthEvent]:
    query = select(AuthEvent).order_by(AuthEvent.occurred_at.desc(), AuthEvent.id.desc()).limit(limit)
    if user_id is not None:
        query = query.where(AuthEvent.user_id == user_id)
    return list(request.dbsession.scalars(query))


def describe(event: str) -> str:
    try:
        return DESCRIPTIONS[Event(event)]
    except ValueError:
        return event
