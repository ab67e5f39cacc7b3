"""Remember-me: a long-lived cookie that brings back a login after the session is gone.

Barry Jaspan's scheme: the cookie carries ``series.token``; each use rotates the token. A
token that matches neither the current one nor (for a few seconds) the one just replaced means
the cookie was copied: every remembered login of that user is revoked. The one just replaced,
after those seconds, while the session its rotation started never came back, is most likely
an answer that never arrived: that remembered login alone ends (``REUSED``).
"""
from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from pyramid.request import Request
from sqlalchemy.orm import Session

from ..models import RememberToken, User, UserSession
from .tokens import hash_token, is_well_formed, new_token

#: Parallel requests of one browser may all present the token that the first one rotated.
ROTATION_GRACE = timedelta(seconds=30)


class RememberState(enum.Enum):
    ABSENT = "absent"
    USED = "used"
    GRACE = "grace"  # the token just replaced, inside the grace: served by the successor
    INVALID = "invalid"  # unknown, expired, revoked or garbage
    THEFT = "theft"
    #: The token just replaced, after the grace, while the session its rotation started has
    #: not been back since: the answer that carried the rotation was most likely lost (a
    #: client gone, a process killed after the commit). Only this remembered login ends.
    REUSED = "reused"


@dataclass(frozen=True)
class RememberLookup:
    state: RememberState
    user: User | None = None
    #: With USED: the rotated cookie value to send back.
    cookie_value: str | None = None
    expires_at: datetime | None = None
    #: With USED: the row, so that the session started from it can be recorded.
    token_id: int | None = None
    #: With GRACE: the live session the rotation started (None: it is gone; anonymous).
    successor: UserSession | None = None


def _cookie(series: str, token: str) -> str:
    return f"{series}.{token}"


class RememberStore:
    def __init__(self, dbsession: Session, now: datetime, *, max_age: int) -> None:
        self.db = dbsession
        self.now = now
        self.max_age = timedelta(seconds=max_age)

    @classmethod
    def of(cls, request: Request, db: Session | None = None) -> RememberStore:
        """The store in ``db`` (a unit of work), or in the request's own by default."""
        return cls(
            request.dbsession if db is None else db,
            request.now,
            max_age=request.appserver_settings.remember_max_age,
        )

    def issue(self, user: User | int, *, expires_at: datetime | None = None) -> tuple[str, RememberToken]:
        series, token = new_token(), new_token()
        row = RememberToken(
            series=series,
            token_hash=hash_token(token),
            user_id=user if isinstance(user, int) else user.id,
            created_at=self.now,
            rotated_at=self.now,
            expires_at=expires_at or self.now + self.max_age,
        )
        self.db.add(row)
        self.db.flush()
        return _cookie(series, token), row

    def use(self, value: str) -> RememberLookup:
        series, _, token = value.partition(".")
        if not (is_well_formed(series) and is_well_formed(token)):
            return RememberLookup(RememberState.INVALID)
        # The rows stay locked until the caller's unit ends (PostgreSQL; SQLite's write
        # transaction already holds the database): a parallel use of the same token waits
        # and then sees the rotation (GRACE, served by its successor) instead of minting a
        # second session, and a revocation in flight is seen instead of overtaken. The
        # account's row is locked before the token's, the order of every transaction that
        # takes both (a login, a password change, a deactivation: docs/concurrency.md), so
        # none of them waits for this one while this one waits for it.
        user_id = self.db.scalar(select(RememberToken.user_id).where(RememberToken.series == series))
        if user_id is None:
            return RememberLookup(RememberState.INVALID)
        user = self.db.scalar(
            select(User).where(User.id == user_id).with_for_update(key_share=True)
        )
        row = self.db.scalar(
            select(RememberToken).where(RememberToken.series == series).with_for_update()
        )
        if user is None or row is None or row.user_id != user.id:
            return RememberLookup(RememberState.INVALID)
        if row.revoked_at is not None or self.now >= row.expires_at or not user.active:
            return RememberLookup(RememberState.INVALID, user)
        presented = hash_token(token)
        if hmac.compare_digest(presented, row.token_hash):
            fresh = new_token()
            rotated = self.db.execute(
                update(RememberToken)
                .where(
                    RememberToken.id == row.id,
                    RememberToken.token_hash == presented,
                    RememberToken.revoked_at.is_(None),
                )
                .values(token_hash=hash_token(fresh), previous_token_hash=presented, rotated_at=self.now)
                .execution_options(synchronize_session=False)
            ).rowcount
            if rotated != 1:  # changed under us after all: never start a session from it
                return RememberLookup(RememberState.INVALID, user)
            return RememberLookup(RememberState.USED, user, _cookie(series, fresh), row.expires_at, row.id)
        if (
            row.previous_token_hash is not None
            and hmac.compare_digest(presented, row.previous_token_hash)
            and self.now - row.rotated_at <= ROTATION_GRACE
        ):
            return RememberLookup(
                RememberState.GRACE, user, None, row.expires_at, successor=self._successor(row)
            )
        if row.previous_token_hash is not None and hmac.compare_digest(presented, row.previous_token_hash):
            successor = (
                self.db.get(UserSession, row.successor_session_id) if row.successor_session_id else None
            )
            # Never touched: its last_seen_at never moved. A session gone (purged), revoked,
            # or touched was used by someone: theft, as before. (Touches are written once a
            # touch interval, so use within the first one does not show; either way the
            # holder of the successor loses it, and gains nothing a theft answer would take.)
            if successor is not None and successor.revoked_at is None and successor.last_seen_at <= successor.created_at:
                # Whoever holds the replaced token and whoever holds its successor lose this
                # login: a thief who rotated first holds nothing more from this cookie, so
                # the user's other sessions and remembered logins are left alone.
                self._end_series(row, successor)
                return RememberLookup(RememberState.REUSED, user)
        self.revoke_user(user.id)
        return RememberLookup(RememberState.THEFT, user)

    def _end_series(self, row: RememberToken, successor: UserSession) -> None:
        """Revoke one series and the session its last rotation started (tokens before
        sessions: the one lock order)."""
        self.db.execute(
            update(RememberToken).where(RememberToken.id == row.id).values(revoked_at=self.now)
            .execution_options(synchronize_session=False)
        )
        self.db.execute(
            update(UserSession)
            .where(UserSession.id == successor.id, UserSession.revoked_at.is_(None))
            .values(revoked_at=self.now)
            .execution_options(synchronize_session=False)
        )

    def _successor(self, row: RememberToken) -> UserSession | None:
        if row.successor_session_id is None:
            return None
        session = self.db.get(UserSession, row.successor_session_id)
        if session is None or session.revoked_at is not None or self.now >= session.expires_at:
            return None
        return session

    def revoke_for_session(self, session: UserSession) -> int:
        """Revoke the series whose last login or rotation started ``session``: logging one
        browser out from another must end its remembered login too, or it is back at once."""
        return self.db.execute(
            update(RememberToken)
            .where(RememberToken.successor_session_id == session.id, RememberToken.revoked_at.is_(None))
            .values(revoked_at=self.now)
            .execution_options(synchronize_session=False)
        ).rowcount

    def pass_on(self, old: UserSession, new: UserSession) -> None:
        """The series whose last login or rotation started ``old`` now names ``new``, which
        replaces it in the same browser (a WebSudo confirmation rotates the session): logging
        that browser out from another must still end its remembered login."""
        self.db.execute(
            update(RememberToken)
            .where(RememberToken.successor_session_id == old.id, RememberToken.revoked_at.is_(None))
            .values(successor_session_id=new.id)
            .execution_options(synchronize_session=False)
        )

    def record_successor(self, token_id: int, session: UserSession) -> None:
        """Remember which session the rotation of ``token_id`` started (see GRACE)."""
        self.db.execute(
            update(RememberToken)
            .where(RememberToken.id == token_id)
            .values(successor_session_id=session.id)
            .execution_options(synchronize_session=False)
        )

    def revoke_series(self, value: str) -> list[int]:
        """Revoke the series the cookie ``value`` names; returns the id of the session its
        last login or rotation started, which the caller ends with it (sessions after
        tokens, the one lock order): a copy of the cookie used elsewhere started that
        session, and must not keep it past this browser's log-out."""
        series = value.partition(".")[0]
        if not is_well_formed(series):
            return []
        started = self.db.scalars(
            update(RememberToken)
            .where(RememberToken.series == series, RememberToken.revoked_at.is_(None))
            .values(revoked_at=self.now)
            .returning(RememberToken.successor_session_id)
            .execution_options(synchronize_session=False)
        ).all()
        return [session_id for session_id in started if session_id is not None]

    def current_series(self, value: str | None, user_id: int) -> RememberToken | None:
        """The live series of ``user_id`` that the cookie ``value`` names, when it holds the
        series' current token: the remembered login of the browser asking, not a copy a
        rotation has left behind. (A copy of the current token cannot be told apart: the
        caller replaces the series, :meth:`replace`, so that every copy is refused.)"""
        series, _, token = (value or "").partition(".")
        if not (is_well_formed(series) and is_well_formed(token)):
            return None
        row = self.db.scalar(
            select(RememberToken).where(
                RememberToken.series == series,
                RememberToken.user_id == user_id,
                RememberToken.revoked_at.is_(None),
                RememberToken.expires_at > self.now,
            )
        )
        if row is None or not hmac.compare_digest(hash_token(token), row.token_hash):
            return None
        return row

    def replace(self, row: RememberToken, successor: UserSession) -> str:
        """End the series ``row`` and start a new one for the same browser, until the same
        expiry, its session ``successor``: the browser that changed its password or logged
        its other sessions out keeps its remembered login, and a copy of the old cookie names
        a revoked series (refused as stale; no grace to ride, no theft alarm to raise for
        the browser's own requests in flight). Returns the new cookie value."""
        self.db.execute(
            update(RememberToken).where(RememberToken.id == row.id).values(revoked_at=self.now)
            .execution_options(synchronize_session=False)
        )
        value, new_row = self.issue(row.user_id, expires_at=row.expires_at)
        self.record_successor(new_row.id, successor)
        return value

    def revoke_user(self, user_id: int, *, keep: RememberToken | None = None) -> int:
        """Revoke the user's series; but ``keep`` (:meth:`current_series`: the browser that
        asked to log out its other sessions, or changed its password)."""
        where = [RememberToken.user_id == user_id, RememberToken.revoked_at.is_(None)]
        if keep is not None:
            where.append(RememberToken.id != keep.id)
        return self.db.execute(
            update(RememberToken).where(*where).values(revoked_at=self.now)
            .execution_options(synchronize_session=False)
        ).rowcount

    def purge_batch(self, batch_size: int = 1000) -> int:
        dead = or_(RememberToken.revoked_at.is_not(None), RememberToken.expires_at <= self.now)
        ids = list(self.db.scalars(select(RememberToken.id).where(dead).limit(batch_size)))
        if ids:
            self.db.execute(delete(RememberToken).where(RememberToken.id.in_(ids)))
        return len(ids)
