"""Server-side sessions: issue, look up, touch, revoke, purge.

Strict by design: a token the server did not issue is never adopted and never creates a
row; only its SHA-256 is stored; a revoked row can never be revived.
"""
from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pyramid.request import Request
from sqlalchemy import bindparam, delete, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ..models import RememberToken, User, UserSession
from ..models.prepared import PreparedRead
from ..models.rows import OwnedRowLoader
from ..models.units import read_bind
from .account import Account
from .tokens import hash_token, is_well_formed, new_token


#: How long after a rotation (a WebSudo confirmation, a password change, "log out other
#: sessions") the replaced cookie is still this browser's: another tab's request sent with it
#: before the rotating answer arrived. As long as remember-me's grace, for the same reason.
ROTATION_GRACE = timedelta(seconds=30)
#: Rotations followed at most, from a cookie to the live session (a chain is one per tab's
#: rotation within the grace; more is no browser).
MAX_ROTATIONS_FOLLOWED = 8


class CookieState(enum.Enum):
    """What became of the session cookie a request presented."""

    ABSENT = "absent"
    LIVE = "live"
    EXPIRED = "expired"
    REVOKED = "revoked"
    UNKNOWN = "unknown"
    MALFORMED = "malformed"

    @property
    def stale(self) -> bool:
        """Presented, but maps to no live session: rule 1's trigger."""
        return self not in (CookieState.ABSENT, CookieState.LIVE)


class SessionEnded(Exception):
    """The session this request is served by was revoked while the request changed it (a
    rotation): answered as a stale cookie, and the request's transaction is aborted."""


class SessionLookup:
    """What became of a session cookie, from the one row the lookup read (session and user).

    ``session`` and ``user``, detached ORM objects, are made from the row on first use. A
    steady cookie request needs neither: its state, the account it names (:attr:`account`)
    and the touch's key come from the row's values. Making the two objects on every request,
    and freeing them, cost about a tenth of a cookie request over HTTP (docs/performance.md).
    """

    __slots__ = ("state", "due_touch", "_row", "_objects", "_account")

    def __init__(self, state: CookieState, row: Sequence[Any] | None = None, *, due_touch: bool = False) -> None:
        self.state = state
        #: Live, and last seen a touch interval ago or more: :meth:`SessionStore.touch` it.
        self.due_touch = due_touch
        self._row = row
        self._objects: tuple[UserSession, User] | None = None
        self._account: Account | None = None

    def _loaded(self) -> tuple[UserSession, User] | None:
        if self._objects is None and self._row is not None:
            self._objects = _SESSION_ROWS.load(self._row)
        return self._objects

    @property
    def session(self) -> UserSession | None:
        objects = self._loaded()
        return objects[0] if objects else None

    @property
    def user(self) -> User | None:
        objects = self._loaded()
        return objects[1] if objects else None

    def session_value(self, key: str) -> Any:
        """A column of the session row, as read (the object's, once it is made)."""
        if self._objects is not None:
            return getattr(self._objects[0], key)
        return self._row[_SESSION_ROWS.item_index[key]]

    @property
    def account(self) -> User | Account | None:
        """The account the cookie names: the user object once made (it may have changed
        since), else a snapshot of the row."""
        if self._objects is not None:
            return self._objects[1]
        if self._account is None and self._row is not None:
            self._account = Account.from_row(self._row, _SESSION_ROWS.owner_index)
        return self._account


@dataclass(frozen=True)
class IssuedSession:
    token: str
    session: UserSession


_SESSION_ROWS = OwnedRowLoader(UserSession, "s_")
_REVOKED_AT = _SESSION_ROWS.item_index["revoked_at"]
_EXPIRES_AT = _SESSION_ROWS.item_index["expires_at"]
_LAST_SEEN_AT = _SESSION_ROWS.item_index["last_seen_at"]
_ACTIVE = _SESSION_ROWS.owner_index["active"]

#: Built once: constructing the statement per request cost more than running it. A Core
#: statement, run by the driver on an engine (every live request), or in a unit's or a
#: test's transaction: the ORM's loading cost more than the query.
_LOOKUP = PreparedRead(
    select(*_SESSION_ROWS.columns)
    .join_from(UserSession, User, UserSession.user_id == User.id)
    .where(UserSession.token_hash == bindparam("token_hash"))
)


def acting_session_ended(request: Request) -> bool:
    """Whether the session this request is served by was revoked after it was checked (by
    "log out everywhere", say, committed while the request ran). Asked under the account's
    row lock by what makes credentials out of a session (a token, a rotated session after a
    password change): the revocation then either committed first and is seen here, or
    waits for this request and revokes what it made. Basic and Bearer requests have no
    session: False."""
    identity = request.authentication.identity
    if identity is None or identity.session is None:
        return False
    revoked_at = request.dbsession.scalar(
        select(UserSession.revoked_at).where(UserSession.id == identity.session.id)
    )
    return revoked_at is not None


class SessionStore:
    def __init__(
        self,
        dbsession: Session,
        now: datetime,
        *,
        idle_timeout: int,
        max_age: int,
        touch_interval: int,
    ) -> None:
        self.db = dbsession
        self.now = now
        self.idle = timedelta(seconds=idle_timeout)
        self.max_age = timedelta(seconds=max_age)
        self.touch_interval = timedelta(seconds=touch_interval)

    def issue(
        self, user: User, *, user_agent: str = "", remote_addr: str = "", websudo_at: datetime | None = None,
        expires_at: datetime | None = None, password_at: datetime | None = None,
    ) -> IssuedSession:
        """``websudo_at``: a session rotated by a WebSudo confirmation starts elevated.
        ``expires_at``: a rotation's new session ends when the login's would have (the
        absolute lifetime counts from the login, whatever rotates its token)."""
        token = new_token()
        row = UserSession(
            token_hash=hash_token(token),
            user_id=user.id,
            created_at=self.now,
            last_seen_at=self.now,
            expires_at=self.now + self.max_age if expires_at is None else expires_at,
            user_agent=user_agent[:512],
            remote_addr=remote_addr[:64],
            websudo_at=websudo_at,
            password_at=password_at,
        )
        row.user = user
        self.db.add(row)
        self.db.flush()
        return IssuedSession(token, row)

    @classmethod
    def reader(cls, request: Request) -> SessionStore:
        """A store for :meth:`lookup` alone, on the engine of the units of work: no Session
        and no transaction for the one SELECT of a cookie request."""
        return cls.of(request, read_bind(request))

    @classmethod
    def of(cls, request: Request, db: Session | Engine | Connection | None = None) -> SessionStore:
        """The store in ``db`` (a unit of work), or in the request's own by default."""
        settings = request.appserver_settings
        return cls(
            request.dbsession if db is None else db,
            request.now,
            idle_timeout=settings.idle_timeout,
            max_age=settings.max_age,
            touch_interval=settings.touch_interval,
        )

    def lookup(self, token: str) -> SessionLookup:
        """One SELECT (session joined with its user); it writes nothing."""
        if not is_well_formed(token):
            return SessionLookup(CookieState.MALFORMED)
        row = _LOOKUP.first(self.db, {"token_hash": hash_token(token)})
        if row is None:
            return SessionLookup(CookieState.UNKNOWN)
        if row[_REVOKED_AT] is not None or not row[_ACTIVE]:
            return SessionLookup(CookieState.REVOKED, row)
        last_seen_at = row[_LAST_SEEN_AT]
        if self.now >= row[_EXPIRES_AT] or self.now >= last_seen_at + self.idle:
            return SessionLookup(CookieState.EXPIRED, row)
        return SessionLookup(CookieState.LIVE, row, due_touch=self.now - last_seen_at >= self.touch_interval)

    def rotated_successor(self, session: UserSession) -> UserSession | None:
        """The live session that rotations started in place of ``session`` within the grace
        (:data:`ROTATION_GRACE`), or None. A session ended any other way (a log-out, a
        revocation), or replaced longer ago, has none: its cookie is stale."""
        current = session
        for _ in range(MAX_ROTATIONS_FOLLOWED):
            if (current.replaced_by_id is None or current.revoked_at is None
                    or self.now - current.revoked_at > ROTATION_GRACE):
                return None
            successor = self.db.get(UserSession, current.replaced_by_id)
            if successor is None or successor.user_id != session.user_id:
                return None
            if successor.revoked_at is None:
                live = self.now < successor.expires_at and self.now < successor.last_seen_at + self.idle
                return successor if live else None
            current = successor
        return None

    def touch(self, session: UserSession) -> bool:
        """Note the session as used now (for the idle timeout); False if it was revoked
        meanwhile. At most once per touch interval, so a steady client writes nothing."""
        # The WHERE clause is what stops a request in flight from reviving a revoked session.
        result = self.db.execute(
            update(UserSession)
            .where(UserSession.id == session.id, UserSession.revoked_at.is_(None))
            .values(last_seen_at=self.now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            return False
        set_committed_value(session, "last_seen_at", self.now)  # no extra SELECT to reload it
        return True

    def revoke(self, session: UserSession, *, replaced_by: UserSession | None = None) -> bool:
        """True when this call revoked it (a parallel log-out's UPDATE waits, then matches
        nothing). ``replaced_by``: the session a rotation started in its place."""
        values: dict = {"revoked_at": self.now}
        if replaced_by is not None:
            values["replaced_by_id"] = replaced_by.id
        revoked = self.db.execute(
            update(UserSession)
            .where(UserSession.id == session.id, UserSession.revoked_at.is_(None))
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount > 0
        set_committed_value(session, "revoked_at", session.revoked_at or self.now)
        return revoked

    def revoke_user_sessions(self, user_id: int, *, keep: UserSession | None = None) -> int:
        """Revoke every live session of a user (except ``keep``); returns how many."""
        statement = update(UserSession).where(
            UserSession.user_id == user_id, UserSession.revoked_at.is_(None)
        )
        if keep is not None:
            statement = statement.where(UserSession.id != keep.id)
        result = self.db.execute(
            statement.values(revoked_at=self.now).execution_options(synchronize_session=False)
        )
        return result.rowcount

    def active_sessions(self, user_id: int) -> list[UserSession]:
        rows = self.db.scalars(
            select(UserSession)
            .where(
                UserSession.user_id == user_id,
                UserSession.revoked_at.is_(None),
                UserSession.expires_at > self.now,
                UserSession.last_seen_at > self.now - self.idle,
            )
            .order_by(UserSession.last_seen_at.desc())
        )
        return list(rows)

    def purge_batch(self, batch_size: int = 1000, *, after: int = 0) -> tuple[int, int]:
        """Delete up to ``batch_size`` expired or revoked rows with ids above ``after``;
        returns how many, and the ``after`` of the next batch (a batch that kept a row
        touched meanwhile comes back short and ends the run). The caller commits each batch
        so one purge never holds a long lock, and passes that ``after`` on only once the
        batch committed (a batch run again after an error must look at the same rows). Live
        sessions are never touched.

        Walking the primary key onwards, each batch reads only its own part of the table,
        instead of scanning again the rows that earlier batches deleted (10^6 rows: seconds
        instead of minutes)."""
        dead = or_(
            UserSession.revoked_at.is_not(None),
            UserSession.expires_at <= self.now,
            UserSession.last_seen_at <= self.now - self.idle,
        )
        ids = list(
            self.db.scalars(
                select(UserSession.id)
                .where(UserSession.id > after, dead)
                .order_by(UserSession.id)
                .limit(batch_size)
            )
        )
        if not ids:
            return 0, after
        # Remember-me tokens before sessions, the one lock order: left to the foreign key's
        # ON DELETE SET NULL, the tokens naming these sessions were locked after them,
        # against a remember-me login that holds its token and then revokes its old
        # session (a deadlock on PostgreSQL).
        self.db.execute(
            update(RememberToken)
            .where(RememberToken.successor_session_id.in_(ids))
            .values(successor_session_id=None)
            .execution_options(synchronize_session=False)
        )
        # The condition once more: a session touched since the SELECT (a request at the very
        # end of its idle time, whose answer is on its way) is live again and stays.
        deleted = self.db.execute(delete(UserSession).where(UserSession.id.in_(ids), dead)).rowcount
        return deleted, ids[-1]


def add_successors(db: Session, sessions: dict[int, UserSession]) -> None:
    """Add to ``sessions`` (by id) those that rotations started in their place, and theirs in
    turn, as committed now. The caller holds the account's row, which every rotation takes
    first, so none is in flight: a log-out that overlapped one ends the new session too."""
    frontier = list(sessions)
    while frontier:
        found = db.scalars(
            select(UserSession.replaced_by_id)
            .where(UserSession.id.in_(frontier), UserSession.replaced_by_id.is_not(None))
        ).all()
        frontier = []
        for session_id in found:
            if session_id not in sessions and (successor := db.get(UserSession, session_id)) is not None:
                sessions[session_id] = successor
                frontier.append(session_id)
