"""Account changes that have security consequences, in one place for the account page,
the admin pages and the command line: each revokes what it must and leaves an audit event.
"""
from __future__ import annotations

from pyramid.request import Request

from ..models import User, UserSession
from . import audit
from .audit import Event

MIN_PASSWORD_LENGTH = 8


class AccountError(ValueError):
    """A request that cannot be done, with a message for the person who asked."""


def validate_new_password(request: Request, password: str, confirm: str | None = None) -> None:
    if confirm is not None and password != confirm:
        raise AccountError("The two new passwords do not match.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"Choose a password of at least {MIN_PASSWORD_LENGTH} characters.")
    if request.passwords.too_long(password):
        raise AccountError(f"Passwords are limited to {request.passwords.max_bytes} bytes.")


def set_password(request: Request, user: User, password: str, *, keep: UserSession | None = None) -> int:
    """Store a new hash and revoke every session (but ``keep``, which the caller rotates)
    and every remember-me token.

    Basic auth with the old password fails from the next request on, in every process,
    because Basic is checked against the stored hash each time.
    """
    user.password_hash = request.passwords.hash(password)
    user.password_changed_at = request.now
    revoked = request.session_store.revoke_user_sessions(user.id, keep=keep)
    request.remember_store.revoke_user(user.id)
    audit.record(request, Event.PASSWORD_CHANGED, user, f"{revoked} other session(s) revoked")
    return revoked


def revoke_sessions(request: Request, user: User, *, keep: UserSession | None = None, by: str = "") -> int:
    revoked = request.session_store.revoke_user_sessions(user.id, keep=keep)
    if keep is None:
        request.remember_store.revoke_user(user.id)
    audit.record(request, Event.SESSION_REVOKED, user, f"{revoked} session(s){' by ' + by if by else ''}")
    return revoked


def revoke_session(request: Request, user: User, session: UserSession) -> None:
    request.session_store.revoke(session)
    audit.record(request, Event.SESSION_REVOKED, user, f"session started {session.created_at:%Y-%m-%d %H:%M}")


def set_active(request: Request, user: User, active: bool, *, by: User | None = None) -> None:
    if by is not None and by.id == user.id and not active:
        raise AccountError("You cannot deactivate your own account.")
    user.active = active
    if not active:
        request.session_store.revoke_user_sessions(user.id)
        request.remember_store.revoke_user(user.id)
    audit.record(request, Event.USER_ACTIVATED if active else Event.USER_DEACTIVATED, user,
                 f"by {by.username}" if by is not None else "")


def unlock(request: Request, user: User, *, by: User | str | None = None) -> None:
    """End a cool-down now: the next login is checked normally (an admin, or the command line)."""
    user.current_failed_logins = 0
    user.locked_until = None
    who = by.username if isinstance(by, User) else by
    audit.record(request, Event.UNLOCKED, user, f"by {who}" if who else "")
