"""Checking passwords and logging in and out: shared by the form, the REST session resource
and HTTP Basic, so they share one failure count and one lock-out.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import timedelta

from pyramid.request import Request
from pyramid.security import forget, remember
from sqlalchemy import select, update
from sqlalchemy.orm.attributes import set_committed_value

from ..models import User, canonical_username
from ..models.user import USERNAME_MAX_LENGTH


class Outcome(enum.Enum):
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


def find_user(request: Request, username: str) -> User | None:
    if not username or len(username) > USERNAME_MAX_LENGTH or "\x00" in username:
        return None
    return request.dbsession.scalar(
        select(User).where(User.username_key == canonical_username(username))
    )


def locked_for(request: Request, user: User) -> int | None:
    """Seconds left in the user's cool-down, or None when they may try."""
    if user.locked_until is None or request.now >= user.locked_until:
        return None
    return max(1, math.ceil((user.locked_until - request.now).total_seconds()))


def check_password(request: Request, username: str, password: str) -> Attempt:
    """Verify credentials, counting failures in the database.

    A locked account is denied without looking at the password. Unknown users, wrong
    passwords and inactive accounts give the same answer and cost one hash each.
    """
    passwords = request.passwords
    user = find_user(request, username)
    if user is not None:
        wait = locked_for(request, user)
        if wait is not None:
            return Attempt(Outcome.DENIED, user, wait)
    if user is None:
        passwords.dummy_verify()
        return Attempt(Outcome.FAILED)
    ok, new_hash = passwords.verify(password, user.password_hash)
    if not ok or not user.active:
        if not ok:
            _record_failure(request, user)
        return Attempt(Outcome.FAILED, user)
    if new_hash is not None:
        user.password_hash = new_hash
    if user.current_failed_logins or user.locked_until is not None:
        user.current_failed_logins = 0
        user.locked_until = None
    return Attempt(Outcome.OK, user)


def _record_failure(request: Request, user: User) -> None:
    """Atomic increments, so concurrent failures in several processes all count."""
    settings = request.appserver_settings
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
    if current >= settings.max_failures:
        doublings = min(current - settings.max_failures, 30)
        seconds = min(settings.lockout_seconds * 2**doublings, settings.lockout_max_seconds)
        user.locked_until = request.now + timedelta(seconds=seconds)


def log_in(request: Request, user: User) -> list[tuple[str, str]]:
    """Start a new session for ``user``; returns the headers that set its cookie.

    The session the client had (any state) is revoked first, so a planted token never
    becomes a logged-in one (session fixation), and nothing of a previous user survives.
    """
    user.previous_login_at = user.last_login_at
    user.last_login_at = request.now
    user.login_count = (user.login_count or 0) + 1
    return remember(request, user.id, user=user)


def log_out(request: Request) -> list[tuple[str, str]]:
    return forget(request)
