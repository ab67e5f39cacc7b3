"""Checking passwords and logging in and out: shared by the form, the REST session resource
and HTTP Basic, so they share one failure count and one lock-out, in every process.
"""
from __future__ import annotations

import enum
import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from pyramid.request import Request
from pyramid.security import forget, remember
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from ..models import LoginThrottle, User, canonical_username
from ..models.user import USERNAME_MAX_LENGTH
from ..settings import AppSettings
from . import audit
from .audit import Event


class Outcome(enum.Enum):
    """The values are Seraph's ``X-Seraph-LoginReason``."""

    OK = "OK"
    FAILED = "AUTHENTICATED_FAILED"
    DENIED = "AUTHENTICATION_DENIED"


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    user: User | None = None
    retry_after: int | None = None  # seconds, with DENIED

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


def plausible_username(username: str) -> bool:
    return bool(username) and len(username) <= USERNAME_MAX_LENGTH and "\x00" not in username


def find_user(request: Request, username: str) -> User | None:
    if not plausible_username(username):
        return None
    return request.dbsession.scalar(
        select(User).where(User.username_key == canonical_username(username))
    )


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
    return timedelta(seconds=min(settings.lockout_seconds * 2**doublings, settings.lockout_max_seconds))


def check_password(request: Request, username: str, password: str, *, channel: str) -> Attempt:
    """Verify credentials, counting failures in the database.

    A locked account is denied without looking at the password. Unknown users, wrong
    passwords and inactive accounts give the same answer and cost one hash each; unknown
    names are counted and locked too, so a lock-out reveals nothing.
    """
    user = find_user(request, username)
    if user is None:
        return _check_unknown(request, username, channel)
    return check_user_password(request, user, password, channel=channel)


def check_user_password(request: Request, user: User, password: str, *, channel: str) -> Attempt:
    """:func:`check_password` for a user already in hand (re-authenticating the logged-in
    user before a password change): the same lock-out and counting, without looking them up."""
    wait = locked_for(request, user)
    if wait is not None:
        audit.record(request, Event.LOGIN_DENIED, user, channel)
        return Attempt(Outcome.DENIED, user, wait)
    ok, new_hash = request.passwords.verify(password, user.password_hash)
    if not ok:
        _record_failure(request, user, channel)
        return Attempt(Outcome.FAILED, user)
    if not user.active:
        audit.record(request, Event.LOGIN_FAILED, user, f"{channel}: account inactive")
        return Attempt(Outcome.FAILED, user)
    if new_hash is not None:
        user.password_hash = new_hash  # verify_and_update: upgrade an old scheme, on success only
    if user.current_failed_logins or user.locked_until is not None:
        user.current_failed_logins = 0
        user.locked_until = None
    return Attempt(Outcome.OK, user)


def _record_failure(request: Request, user: User, channel: str) -> None:
    """Atomic increments, so concurrent failures in several processes all count."""
    current, total = request.dbsession.execute(
        update(User)
        .where(User.id == user.id)
        .values(
            current_failed_logins=User.current_failed_logins + 1,
            total_failed_logins=User.total_failed_logins + 1,
            last_failed_login_at=request.now,
        )
        .returning(User.current_failed_logins, User.total_failed_logins)
        .execution_options(synchronize_session=False)
    ).one()
    set_committed_value(user, "current_failed_logins", current)
    set_committed_value(user, "total_failed_logins", total)
    set_committed_value(user, "last_failed_login_at", request.now)
    audit.record(request, Event.LOGIN_FAILED, user, f"{channel}: wrong password")
    duration = lockout_duration(request.appserver_settings, current)
    if duration is not None:
        user.locked_until = request.now + duration
        audit.record(request, Event.LOCKED_OUT, user, f"for {int(duration.total_seconds())} seconds")


def _name_hash(username: str) -> str:
    return hashlib.sha256(canonical_username(username).encode("utf-8")).hexdigest()


def _check_unknown(request: Request, username: str, channel: str) -> Attempt:
    """Mirror of the known-user path for a name with no account: same answers, same cost."""
    if not plausible_username(username):
        request.passwords.dummy_verify()
        return Attempt(Outcome.FAILED)
    db = request.dbsession
    key = _name_hash(username)
    throttle = db.get(LoginThrottle, key)
    if throttle is not None:
        wait = _seconds_until(request.now, throttle.locked_until)
        if wait is not None:
            return Attempt(Outcome.DENIED, None, wait)
    request.passwords.dummy_verify()
    audit.record(request, Event.LOGIN_FAILED, None, f"{channel}: unknown user")
    if throttle is None:
        try:
            with db.begin_nested():
                throttle = LoginThrottle(
                    name_hash=key, current_failed_logins=0, last_failed_login_at=request.now
                )
                db.add(throttle)
        except IntegrityError:  # another process counted this name first
            throttle = db.get(LoginThrottle, key, populate_existing=True)
    current = db.execute(
        update(LoginThrottle)
        .where(LoginThrottle.name_hash == key)
        .values(
            current_failed_logins=LoginThrottle.current_failed_logins + 1,
            last_failed_login_at=request.now,
        )
        .returning(LoginThrottle.current_failed_logins)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    duration = lockout_duration(request.appserver_settings, current)
    if duration is not None:
        db.execute(
            update(LoginThrottle)
            .where(LoginThrottle.name_hash == key)
            .values(locked_until=request.now + duration)
            .execution_options(synchronize_session=False)
        )
    return Attempt(Outcome.FAILED)


def note_login(request: Request, user: User) -> None:
    user.previous_login_at = user.last_login_at
    user.last_login_at = request.now
    user.login_count = (user.login_count or 0) + 1
    user.current_failed_logins = 0
    user.locked_until = None


def log_in(
    request: Request, user: User, *, persistent: bool = False, channel: str = "form"
) -> list[tuple[str, str]]:
    """Start a new session for ``user``; returns the headers that set its cookie(s).

    The session the client had (any state) is revoked first, so a planted token never
    becomes a logged-in one (session fixation), and nothing of a previous user survives.
    ``persistent`` also issues a remember-me cookie.
    """
    note_login(request, user)
    audit.record(request, Event.LOGIN_SUCCEEDED, user, channel + (", remember me" if persistent else ""))
    request.login_reason = Outcome.OK.value
    return remember(request, user.id, user=user, persistent=persistent)


def log_out(request: Request) -> list[tuple[str, str]]:
    user = request.user
    if user is not None:
        from .websudo import drop  # websudo checks passwords with this module

        drop(request)  # audited when the session was elevated
        audit.record(request, Event.LOGGED_OUT, user)
    request.login_reason = "OUT"
    return forget(request)


def purge_throttles(request: Request, batch_size: int) -> int:
    """Forget failure counts of unknown names once their cool-down (and the longest one
    possible after it) is over."""
    horizon = request.now - timedelta(seconds=request.appserver_settings.lockout_max_seconds)
    stale = LoginThrottle.last_failed_login_at <= horizon
    keys = list(
        request.dbsession.scalars(
            select(LoginThrottle.name_hash)
            .where(stale, or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until <= request.now))
            .limit(batch_size)
        )
    )
    if keys:
        request.dbsession.execute(delete(LoginThrottle).where(LoginThrottle.name_hash.in_(keys)))
    return len(keys)
