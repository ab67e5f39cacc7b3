"""Checking passwords and logging in and out: shared by the form, the REST session resource
and HTTP Basic, so they share one failure count and one lock-out, in every process.

Password checks read and write in units of their own (:mod:`appserver.models.units`), before
the request's transaction begins; logging in is the request's own write.
"""
from __future__ import annotations

import enum
import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from pyramid.request import Request
from pyramid.security import forget, remember
from sqlalchemy import and_, bindparam, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ..models import LoginThrottle, User, canonical_username
from ..models.prepared import PreparedRead
from ..models.rows import RowLoader
from ..models.units import attach, read_bind, unit
from ..models.user import USERNAME_MAX_LENGTH
from ..settings import AppSettings
from . import audit
from .audit import Event
from .sessions import CookieState, acting_session_ended


class Outcome(enum.Enum):
    """The values are Seraph's ``X-Seraph-LoginReason``."""

    OK = "OK"
    FAILED = "AUTHENTICATED_FAILED"
    DENIED = "AUTHENTICATION_DENIED"


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    user: User | None = None
    #: Seconds: with DENIED, until the cool-down ends; with FAILED, the cool-down this very
    #: failure started (the page says so at once, not on the next attempt), else None.
    retry_after: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


def plausible_username(username: str) -> bool:
    return bool(username) and len(username) <= USERNAME_MAX_LENGTH and "\x00" not in username


_USER_ROW = RowLoader(User, "")
#: The account a password is checked against, read before any lock (a steady Basic client
#: reads it on every request): run by the driver on a live engine (appserver.models.prepared).
_ACCOUNT = PreparedRead(
    select(*_USER_ROW.columns).where(User.username_key == bindparam("username_key"))
)


def _account_named(request: Request, username: str) -> User | None:
    """The account, detached: no Session and no transaction around the one SELECT."""
    if not plausible_username(username):
        return None
    row = _ACCOUNT.first(read_bind(request), {"username_key": canonical_username(username)})
    return None if row is None else _USER_ROW.load(row)


def find_user(request: Request, username: str) -> User | None:
    """The account named ``username``, in the request's unit of work."""
    if not plausible_username(username):
        return None
    key = canonical_username(username)
    return request.dbsession.scalar(select(User).where(User.username_key == key))


def _seconds_until(now: datetime, until: datetime | None) -> int | None:
    if until is None or now >= until:
        return None
    return max(1, math.ceil((until - now).total_seconds()))


def locked_for(request: Request, user: User) -> int | None:
    """Seconds left in the user's cool-down, or None when they may try."""
    return _seconds_until(request.now, user.locked_until)


def lockout_duration(settings: AppSettings, failures: int) -> timedelta | None:
    """No lock below the limit; then the cool-down, doubling per further failure, capped."""
    if failures < settings.max_failures:
        return None
    doublings = min(failures - settings.max_failures, 30)
    return timedelta(seconds=min(settings.lockout_seconds * 2**doublings, settings.max_lockout_seconds))


def check_password(request: Request, username: str, password: str, *, channel: str) -> Attempt:
    """Verify credentials, counting failures in the database.

    Unknown users, wrong passwords and inactive accounts give the same answer and cost one
    hash each; unknown names are counted and locked too, so a lock-out reveals nothing.
    """
    user = _account_named(request, username)
    if user is None:
        return _check_unknown(request, username, channel)
    return check_user_password(request, user, password, channel=channel)


def check_user_password(request: Request, user: User, password: str, *, channel: str) -> Attempt:
    """:func:`check_password` for a user already in hand (the logged-in user re-entering
    their password): the same lock-out and counting.

    The lock-out is atomic across threads and processes: the check runs in a unit of work of
    its own that first locks the account's row (``SELECT ... FOR UPDATE`` on PostgreSQL; the
    write lock of ``BEGIN IMMEDIATE`` on SQLite), reads the count and the lock from it, hashes,
    and commits the result before anyone else may check a password for that account. However
    many attempts arrive at once, at most ``max_failures - failures_so_far`` passwords are
    checked before the lock; the others wait their turn and are then denied unchecked, and
    right passwords all succeed. The unit commits whatever the request does afterwards.
    """
    passwords = request.passwords
    if passwords.verified_before(user.id, user.password_hash, password):
        attempt = _check_known_good(request, user, channel)
        if attempt is not None:
            return attempt
        # A failure was counted after the account was read (a guess in parallel, perhaps the
        # one that locked it): decide on the locked row, as for any other attempt.
    with unit(request, write=True) as db:
        row = db.get(User, user.id, with_for_update=True, populate_existing=True)
        outcome, wait = _check_locked_row(request, db, row, password, channel)
    for name in _COUNTERS:
        set_committed_value(user, name, getattr(row, name))
    return Attempt(outcome, user, wait)


#: The columns a password check may change, copied back to the caller's instance.
_COUNTERS = (
    "current_failed_logins", "total_failed_logins", "last_failed_login_at", "locked_until", "password_hash",
    "window_started_at", "window_failed_logins",
)


def _check_locked_row(
    request: Request, db: Session, user: User, password: str, channel: str
) -> tuple[Outcome, int | None]:
    """The check itself, with the account's row locked by ``db``'s transaction."""
    now = request.now
    wait = _seconds_until(now, user.locked_until)
    if wait is not None:
        audit.record(request, Event.LOGIN_DENIED, user, channel, db=db)
        return Outcome.DENIED, wait
    if not user.active:
        # Answered as a wrong password is, whatever was sent: the hash runs (the same time),
        # the failure counts (the same lock-out), nothing is reset and nothing is kept as
        # verified. A right password told apart here would confirm a guess on an account
        # that its owner may get back.
        request.passwords.verify(password, user.password_hash)
        user.total_failed_logins += 1
        return Outcome.FAILED, _count_failure(request, db, user, user, f"{channel}: account inactive")
    verified_hash = user.password_hash
    if request.passwords.verified_before(user.id, verified_hash, password):
        # Verified by the request that held this lock just before: a client's parallel
        # first requests (Basic) wait here in turn, and only the first runs the hash.
        ok, new_hash = True, None
    else:
        ok, new_hash = request.passwords.verify(password, verified_hash)
    if not ok:
        user.total_failed_logins += 1
        return Outcome.FAILED, _count_failure(request, db, user, user, f"{channel}: wrong password")
    request.passwords.note_verified(user.id, new_hash or verified_hash, password)
    if new_hash is not None:
        user.password_hash = new_hash  # verify_and_update: an old scheme is upgraded
    user.current_failed_logins = 0
    user.locked_until = None
    return Outcome.OK, None


def _check_known_good(request: Request, user: User, channel: str) -> Attempt | None:
    """A password verified lately against the stored hash: nothing is guessed, so nothing is
    locked and no hash runs; the lock-out and the account's state still apply, read from the
    row just loaded. A steady Basic client writes nothing.

    A right password starts the failure count again, but only the count that was read: a
    failure counted since then (and a lock-out it started) stands, and None sends the
    attempt to the locked row. Without that condition, the owner's Basic client wiped the
    lock-out that parallel guesses had just committed, and the guessing never stopped."""
    wait = locked_for(request, user)
    if wait is not None:
        with unit(request, write=True) as db:
            # The account's row before the event's lock, the order of the check on the locked
            # row, which holds the row and then records the same event. Taken the other way
            # (the event's lock, then the row that the new event's foreign key shares), the
            # two waited for each other: a deadlock, broken by aborting one side after a
            # second (an outside review: 11 in 15 rounds of an owner's client and guesses).
            db.get(User, user.id, with_for_update=True)
            audit.record(request, Event.LOGIN_DENIED, user, channel, db=db)
        return Attempt(Outcome.DENIED, user, wait)
    if not user.active:
        return None  # deactivated since it was verified: a failure like any other, locked row
    if user.current_failed_logins or user.locked_until is not None:
        with unit(request, write=True) as db:
            cleared = db.execute(
                update(User)
                .where(
                    User.id == user.id,
                    User.current_failed_logins == user.current_failed_logins,
                    or_(User.locked_until.is_(None), User.locked_until <= request.now),
                )
                .values(current_failed_logins=0, locked_until=None)
                .execution_options(synchronize_session=False)
            ).rowcount
        if not cleared:
            return None
        set_committed_value(user, "current_failed_logins", 0)
        set_committed_value(user, "locked_until", None)
    return Attempt(Outcome.OK, user)


def _name_hash(username: str) -> str:
    return hashlib.sha256(canonical_username(username).encode("utf-8")).hexdigest()


def _check_unknown(request: Request, username: str, channel: str) -> Attempt:
    """Mirror of the known-user path for a name with no account: the same row lock,
    counting, lock-out and audit, so neither answers nor timing tell them apart."""
    if not plausible_username(username):
        request.passwords.dummy_verify()
        return Attempt(Outcome.FAILED)
    key = _name_hash(username)
    now = request.now
    with unit(request, write=True) as db:
        # Insert the name's row if it is new, and lock it either way, in one statement (the
        # known path's SELECT ... FOR UPDATE): equal work for both.
        insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
        upsert = (
            insert(LoginThrottle)
            .values(name_hash=key, current_failed_logins=0, last_failed_login_at=now)
            .on_conflict_do_update(index_elements=["name_hash"], set_={"name_hash": key})
            .returning(LoginThrottle)
        )
        throttle = db.scalars(upsert, execution_options={"populate_existing": True}).one()
        wait = _seconds_until(now, throttle.locked_until)
        if wait is not None:
            audit.record(request, Event.LOGIN_DENIED, None, channel, db=db)
            return Attempt(Outcome.DENIED, None, wait)
        request.passwords.dummy_verify()
        locked_for = _count_failure(request, db, throttle, None, f"{channel}: unknown user")
    return Attempt(Outcome.FAILED, None, locked_for)


def _count_failure(
    request: Request, db: Session, row: User | LoginThrottle, user: User | None, detail: str
) -> int | None:
    """One more failure on ``row`` (an account, or an unknown name's throttle), whose lock
    ``db`` holds; at the limit, the cool-down starts: its seconds, else None."""
    now = request.now
    row.current_failed_logins += 1
    row.last_failed_login_at = now
    audit.record(request, Event.LOGIN_FAILED, user, detail, db=db)
    duration = lockout_duration(request.appserver_settings, row.current_failed_logins)
    if isinstance(row, User):
        duration = _hourly_limit(request, row, duration)
    if duration is not None:
        row.locked_until = now + duration
        audit.record(request, Event.LOCKED_OUT, user, f"for {int(duration.total_seconds())} seconds", db=db)
        return int(duration.total_seconds())
    return None


HOUR = timedelta(hours=1)


def _hourly_limit(request: Request, user: User, duration: timedelta | None) -> timedelta | None:
    """Count the failure in the account's hour too. A right password starts the lock-out's
    count again (as Jira's does), so a guesser who slipped two guesses between each poll of
    the owner's Basic client was never locked out (an outside review); at
    ``max_failures_per_hour`` in one hour, the account is locked until that hour is over,
    whatever succeeded in between (ASVS 2.2.1)."""
    now = request.now
    if user.window_started_at is None or now - user.window_started_at >= HOUR:
        user.window_started_at, user.window_failed_logins = now, 0
    user.window_failed_logins = (user.window_failed_logins or 0) + 1
    if user.window_failed_logins < request.appserver_settings.max_failures_per_hour:
        return duration
    rest_of_hour = user.window_started_at + HOUR - now
    return rest_of_hour if duration is None or rest_of_hour > duration else duration


def note_login(request: Request, user: User) -> None:
    user.previous_login_at = user.last_login_at
    user.last_login_at = request.now
    user.login_count = (user.login_count or 0) + 1


def log_in(
    request: Request, user: User, *, persistent: bool = False, channel: str = "form"
) -> list[tuple[str, str]] | None:
    """Start a new session for ``user``; returns the headers that set its cookie(s), or None
    when the password changed or the account was deactivated since the check passed.

    The session the client had (any state) is revoked first, so a planted token never
    becomes a logged-in one (session fixation), and nothing of a previous user survives.
    ``persistent`` also issues a remember-me cookie.
    """
    checked_hash = user.password_hash
    user = attach(request.dbsession, user)  # loaded by the password check's unit
    if not unchanged_since_check(request, user, checked_hash):
        return None
    note_login(request, user)
    audit.record(request, Event.LOGIN_SUCCEEDED, user, channel + (", remember me" if persistent else ""))
    request.login_reason = Outcome.OK.value
    return remember(request, user.id, user=user, persistent=persistent)


def unchanged_since_check(request: Request, user: User, checked_hash: str) -> bool:
    """The password was checked in a unit of its own, before this transaction; a password
    change or deactivation may have committed since. Lock the account's row until this
    transaction ends and look again: a change in flight then either committed first (seen
    here: the login loses, as if it came after) or waits for this login and revokes the
    session it starts. ``user`` is reloaded from the locked row, so what the caller writes
    next (the login count) builds on the last committed login, not on what the check read
    before parallel ones. One SELECT, on logins and password changes only."""
    current = request.dbsession.scalars(
        select(User).where(User.id == user.id).with_for_update(),
        execution_options={"populate_existing": True},
    ).one_or_none()
    return current is not None and current.active and current.password_hash == checked_hash


@dataclass(frozen=True)
class LoggedOut:
    headers: list[tuple[str, str]]
    #: The session had been ended by another request that committed while this one ran (a
    #: parallel log-out), and nothing was left to end: under /rest the answer is the stale
    #: cookie's 401, as if this request had come a moment later. (A rotation that ended it
    #: started a new session of this browser, which the log-out ends: not this case.)
    ended_meanwhile: bool = False


def log_out(request: Request) -> LoggedOut:
    """Forget the client, and audit the log-out once: parallel log-outs of one session (a
    double click, two tabs) find it revoked by the first and leave no event of their own.

    The account's row is locked first (the one lock order of docs/concurrency.md), as every
    other change of the account's credentials does: a password change of this session in
    flight either committed first (its rotation ended this session: seen here) or waits and
    sees this session ended. Without it both answered success and the change's new session
    outlived the log-out (an outside review: 5 of 40 on two processes)."""
    auth = request.authentication
    identity = auth.identity
    ended_meanwhile = False
    session = identity.session if identity is not None else None
    if session is None and auth.cookie is CookieState.LIVE:
        session = auth.presented_session  # beside Basic or a token: it ends too
    if identity is not None and session is not None:
        request.token_store.lock_owner(session.user_id)
        ended_meanwhile = acting_session_ended(request)
    elif auth.rotated_to is not None:  # the cookies from before another tab's rotation
        request.token_store.lock_owner(auth.rotated_to.user_id)
    if identity is not None:
        from .websudo import drop  # websudo checks passwords with this module

        drop(request, revoking=True)  # audited when the session was elevated
    ended: list = []
    headers = forget(request, ended=ended)
    # A rotation that committed meanwhile (a password change, a WebSudo confirmation in
    # another tab) started a session of this browser, which forget ended: a log-out. Only
    # when another log-out ended everything first is there nothing left to do.
    ended_meanwhile = ended_meanwhile and not ended
    if identity is not None and (ended or identity.session is None):
        owner = identity.user
        if ended and ended[0].user_id != owner.id:  # a cookie sent beside Basic: another account's
            owner = request.dbsession.get(User, ended[0].user_id) or owner
        audit.record(request, Event.LOGGED_OUT, owner)
    elif identity is None and ended:  # the session another tab's rotation started
        audit.record(request, Event.LOGGED_OUT, request.dbsession.get(User, ended[0].user_id))
    request.login_reason = "OUT"
    return LoggedOut(headers, ended_meanwhile)


def purge_throttles(request: Request, batch_size: int) -> int:
    """Forget failure counts of unknown names once their cool-down (and the longest one
    possible after it) is over; how many were forgotten."""
    horizon = request.now - timedelta(seconds=request.appserver_settings.max_lockout_seconds)
    forgettable = and_(
        LoginThrottle.last_failed_login_at <= horizon,
        or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until <= request.now),
    )
    keys = list(
        request.dbsession.scalars(select(LoginThrottle.name_hash).where(forgettable).limit(batch_size))
    )
    if not keys:
        return 0
    # The condition once more: a failure counted for one of these names since the SELECT
    # (PostgreSQL reads a row changed meanwhile again before it deletes it) keeps its row.
    deleted = request.dbsession.execute(
        delete(LoginThrottle).where(LoginThrottle.name_hash.in_(keys), forgettable)
    )
    return deleted.rowcount
