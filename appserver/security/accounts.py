"""Account changes that have security consequences, in one place for the account page,
the admin pages and the command line: each revokes what it must and leaves an audit event.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import NamedTuple

from pyramid.request import Request
from sqlalchemy import or_, update
from sqlalchemy.orm.attributes import set_committed_value

from ..models import RememberToken, User, UserSession
from ..models.user import USERNAME_MAX_LENGTH, canonical_username
from . import audit
from .audit import Event
from .characters import has_bidi_controls, has_control_characters, is_invisible, lookalike_scripts, looks_blank
from .login import Outcome, check_user_password, unchanged_since_check
from .password_policy import context_words, weakness
from .sessions import acting_session_ended, add_successors

#: Besides letters, digits and combining marks of any script.
USERNAME_SYMBOLS = "._-@+"
USERNAME_RULE = (
    f"Choose a username of 1 to {USERNAME_MAX_LENGTH} letters, digits and the symbols "
    f"{' '.join(USERNAME_SYMBOLS)}, starting with a letter or a digit."
)


class AccountError(ValueError):
    """A request that cannot be done, with a message for the person who asked (and, for
    REST answers, the field it is about)."""

    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NeedsPassword(AccountError):
    """A request authenticated by a personal access token asked for a credential that would
    outlive the token: an account, a password, an account brought back (403)."""

    status = 403


def refuse_tokens(request: Request, what: str) -> None:
    """A token never makes credentials (docs/tokens-and-websudo.md): a leaked one-day
    administrator's token must not create an administrator account whose password, and the
    tokens it may mint, outlive the token's revocation. A password-proven request may (a
    session that confirmed it for WebSudo, or Basic)."""
    identity = request.authentication.identity
    if identity is not None and identity.token is not None:
        raise NeedsPassword(f"A personal access token cannot {what}: log in with your password.")


class TooManyAttempts(AccountError):
    """The account is in its cool-down after failed password checks."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many failed password attempts. Wait {retry_after} seconds, then try again.")
        self.retry_after = retry_after


def _username_character(ch: str) -> bool:
    category = unicodedata.category(ch)
    return (category[0] in "LM" or category == "Nd" or ch in USERNAME_SYMBOLS) and not is_invisible(ch)


def validate_username(username: str) -> str:
    """The one rule for new usernames (command line, admin form, demo data); returns the
    name as stored (NFC). Names made before the rule existed keep working: logins look names
    up by their canonical key and never apply this rule."""
    name = unicodedata.normalize("NFC", username)
    if (
        not name
        or len(name) > USERNAME_MAX_LENGTH
        or not unicodedata.category(name[0]) in ("Lu", "Ll", "Lt", "Lm", "Lo", "Nd")
        or not all(_username_character(ch) for ch in name)
    ):
        raise AccountError(USERNAME_RULE, "username")
    mixed = lookalike_scripts(name)
    if len(mixed) > 1:  # "аdmin" with a Cyrillic а: drawn as "admin", another account
        raise AccountError(
            f"Choose a username in one alphabet: {' and '.join(sorted(s.title() for s in mixed))} "
            "letters side by side can look exactly like another name.", "username")
    # The lookup key is stored too, and can be longer: "ß" folds to "ss", U+FDFA to 18.
    if len(canonical_username(name)) > USERNAME_MAX_LENGTH:
        raise AccountError(
            f"Choose a shorter username: compared without case (where ß is ss), it is longer "
            f"than {USERNAME_MAX_LENGTH} characters.", "username")
    return name


#: The users table's column sizes (models/user.py): longer values are refused, never cut.
PROFILE_MAX_LENGTH = 255


def validate_profile(display_name: str, email: str) -> tuple[str, str]:
    """The one rule for a new user's display name and email address (admin form, command
    line); returns them stripped. An email address is optional; one that is given must look
    like one (a single ``@`` between two non-empty parts, no spaces)."""
    display_name, email = display_name.strip(), email.strip()
    if looks_blank(display_name):  # none given, as far as anyone can see: the username stands in
        display_name = ""
    if has_control_characters(display_name):  # NUL: PostgreSQL refuses it; the rest breaks layouts
        raise AccountError("Display names cannot contain control characters.", "display_name")
    if has_bidi_controls(display_name):  # it would reorder the page around the name
        raise AccountError("Display names cannot contain bidirectional override or isolate characters "
                           "(U+202A to U+202E, U+2066 to U+2069).", "display_name")
    if len(display_name) > PROFILE_MAX_LENGTH:
        raise AccountError(f"Display names are limited to {PROFILE_MAX_LENGTH} characters.", "display_name")
    if email:
        local, at, domain = email.rpartition("@")
        if (not at or not local or not domain or "@" in local or len(email) > PROFILE_MAX_LENGTH
                or not email.isprintable() or any(ch.isspace() for ch in email)):
            raise AccountError(
                f"Enter an email address like name@example.com (at most {PROFILE_MAX_LENGTH} "
                "characters), or leave it empty.", "email")
    return display_name, email


def validate_new_password(
    request: Request, password: str, confirm: str | None = None, *, account: User | None = None,
    context: Iterable[str] = (),
) -> None:
    """The one rule for new passwords, wherever they are set (account page, REST, admin
    form, command line, demo data). ``account`` (or, for one not made yet, ``context``): the
    words of the account a password must not lean on (``password_policy``)."""
    if confirm is not None and password != confirm:
        raise AccountError("The two new passwords do not match.", "password")
    if has_control_characters(password):  # NUL, newlines: no client can send them in Basic
        raise AccountError("Passwords cannot contain control characters.", "password")
    settings = request.appserver_settings
    if len(password) < settings.min_password_length:
        raise AccountError(f"Choose a password of at least {settings.min_password_length} characters.",
                           "password")
    if request.passwords.too_long(password):
        raise AccountError(f"Passwords are limited to {request.passwords.max_bytes} bytes.", "password")
    if account is not None:
        context = context_words(account.username, account.display_name, account.email or "")
    problem = weakness(password, context, min_score=settings.min_password_strength)
    if problem is not None:
        raise AccountError(problem, "password")


def change_own_password(request: Request, user: User, current: str, new: str, confirm: str | None = None) -> int:
    """The account page's and ``PUT /rest/api/2/myself/password``'s change: the current
    password is checked like a login (failures count towards the lock-out, so a borrowed
    session cannot guess it freely), then every other session and remember-me token is
    revoked. The caller rotates the current session."""
    if not current:  # nothing was tried: no hash, no failure counted
        raise AccountError("Enter your current password.", "currentPassword")
    attempt = check_user_password(request, user, current, channel="password change")
    if attempt.outcome is Outcome.DENIED:
        raise TooManyAttempts(attempt.retry_after or 1)
    if not attempt.ok:
        raise AccountError("Your current password is not correct.", "currentPassword")
    validate_new_password(request, new, confirm, account=user)
    identity = request.authentication.identity
    keep = identity.session if identity else None
    return set_password(
        request, user, new, keep=keep, keep_remembered=_browsers_series(request, user) if keep else None,
        checked_hash=user.password_hash,
    )


def _browsers_series(request: Request, user: User) -> RememberToken | None:
    """The remembered login of the browser asking (its cookie holds the current token), which
    a password change or "log out other sessions" keeps; :func:`rotated_session` then
    replaces it with a new series, so that a copy of its cookie is left with nothing."""
    return request.remember_store.current_series(request.cookies.get(request.appserver_settings.remember_cookie), user.id)


def set_password(
    request: Request,
    user: User,
    password: str,
    *,
    keep: UserSession | None = None,
    keep_remembered: RememberToken | None = None,
    checked_hash: str | None = None,
    by: str = "",
) -> int:
    """Store a new hash and revoke every session (but ``keep``, which the caller rotates)
    and every remember-me series (but ``keep_remembered``: the browser that made the change,
    whose series the caller's rotation replaces).

    Basic auth with the old password fails from the next request on, in every process,
    because Basic is checked against the stored hash each time.

    ``checked_hash``: the hash the current password was checked against, in a unit of its
    own before this transaction. Another change may have committed since (sessions of one
    account changing its password at once: each proved the old password); the account's row
    is then locked and compared, as a login does, and this change is refused: the first one
    stands and its revocations with it.
    """
    validate_new_password(request, password, account=user)
    new_hash = request.passwords.hash(password)  # before the lock: a hash takes a while
    if checked_hash is not None and (
        not unchanged_since_check(request, user, checked_hash) or acting_session_ended(request)
    ):
        raise AccountError(
            "Your password was changed, your account deactivated or your session ended while "
            "this change was being made: log in again.",
            "currentPassword",
        )
    user.password_hash = new_hash
    user.password_changed_at = request.now
    _write_account_first(request)
    # Before the sessions: see revoke_sessions.
    request.remember_store.revoke_user(user.id, keep=keep_remembered)
    revoked = request.session_store.revoke_user_sessions(user.id, keep=keep)
    sessions = f"{revoked} other session(s)" if keep is not None else f"{revoked} session(s)"
    audit.record(request, Event.PASSWORD_CHANGED, user, f"{sessions} revoked{' by ' + by if by else ''}")
    return revoked


class PasswordReset(NamedTuple):
    revoked: int  #: sessions
    unlocked: bool  #: a lock-out, or failed logins counting towards one, ended


def reset_password(request: Request, user: User, password: str, *, by: User | str) -> PasswordReset:
    """An administrator sets a forgotten password (the admin page, REST, the command line):
    :func:`set_password`, and the lock-out ends too, since whoever forgot a password has
    usually locked the account by guessing it (the new one was refused for the rest of the
    cool-down). The guesses stop mattering: the password they were aimed at is gone.

    Whether there is a lock-out to end is asked of the locked row, not of ``user`` as it was
    read: guesses that locked the account while the new hash was being made committed
    before this change took the row (an outside review: the answer said the password was
    set, and the account stayed locked for the cool-down)."""
    who = by.username if isinstance(by, User) else by
    revoked = set_password(request, user, password, by=who)
    return PasswordReset(revoked, unlock(request, user, by=by, only_if_locked=True))


def _write_account_first(request: Request) -> None:
    """Write the account's row now, which locks it until the transaction ends: the lock
    order of every transaction that takes the account and its remember-me tokens or
    sessions is account, tokens, sessions (a remember-me login locks them so too), so two
    never wait for each other in a circle. Not left to autoflush, which the next query
    would do, or not, by a setting far from here."""
    request.dbsession.flush()


def rotated_session(request: Request, *, password_checked: bool = False) -> list[tuple[str, str]] | None:
    """After a password change or "log out other sessions", keep this client logged in under
    a new session token, and its remembered login under a new series: whoever holds a copy
    of either cookie is left with nothing. The Set-Cookie headers; a cookie-less (Basic) change
    has no session."""
    identity = request.authentication.identity
    if identity is None or not identity.cookie_based:
        return None
    return request.registry.security_policy.rotate(request, renew_remembered=True, password_checked=password_checked)


def revoke_sessions(
    request: Request, user: User, *, keep: UserSession | None = None, everywhere: bool = False, by: str = ""
) -> int:
    """Log a user out. ``everywhere`` (the admin page and the command line): every session,
    remembered login and personal access token. Otherwise ("log out other sessions", the
    user's own account page): every session but ``keep`` and every remembered login but the
    one of the browser asking; the tokens stay, whether the request came with a session or
    with Basic or a token (no session to keep: a leaked token must not end the others).

    The remember-me tokens go first: revoking them waits for a remember-me login in flight
    (it holds its token's row) to commit, so the sessions revoked next include the one it
    started. Sessions first would let that session outlive "log out everywhere".

    The account's row is locked before anything (the first lock of the one order): a token
    or a password change in flight from one of the sessions takes it too, and either
    commits first (its token or new session is revoked here) or sees its session revoked."""
    request.token_store.lock_owner(user.id)
    tokens = ""
    if everywhere:
        request.remember_store.revoke_user(user.id)
        tokens = f", {request.token_store.revoke_user(user.id)} token(s)"
    else:
        # The other browsers' remembered logins too, or they are back at once, silently.
        request.remember_store.revoke_user(user.id, keep=_browsers_series(request, user) if keep else None)
    revoked = request.session_store.revoke_user_sessions(user.id, keep=keep)
    audit.record(request, Event.SESSION_REVOKED, user, f"{revoked} session(s){tokens}{' by ' + by if by else ''}")
    return revoked


def revoke_session(request: Request, user: User, session: UserSession) -> set[int]:
    """Log one browser out (the account page): its session, and its remembered login, first
    (remember-me tokens before sessions, the one lock order). The account's row first, as
    every revocation: a rotation of that session in flight (a WebSudo confirmation, a
    password change) either committed first, and the session it started in that browser is
    ended here too, or waits and sees its session revoked."""
    request.token_store.lock_owner(user.id)
    chain = {session.id: session}
    add_successors(request.dbsession, chain)  # a rotation of it that committed meanwhile
    for ended in chain.values():
        request.remember_store.revoke_for_session(ended)
    for ended in sorted(chain.values(), key=lambda s: s.id):
        request.session_store.revoke(ended)
    audit.record(request, Event.SESSION_REVOKED, user, f"session started {session.created_at:%Y-%m-%d %H:%M}")
    return set(chain)


def set_active(request: Request, user: User, active: bool, *, by: User | None = None) -> None:
    if by is not None and by.id == user.id and not active:
        raise AccountError("You cannot deactivate your own account.")
    user.active = active
    if not active:
        _write_account_first(request)
        request.remember_store.revoke_user(user.id)  # before the sessions: see revoke_sessions
        request.session_store.revoke_user_sessions(user.id)
    audit.record(request, Event.USER_ACTIVATED if active else Event.USER_DEACTIVATED, user,
                 f"by {by.username}" if by is not None else "")


def unlock(request: Request, user: User, *, by: User | str | None = None, only_if_locked: bool = False) -> bool:
    """End a cool-down now: the next login is checked normally (an admin, or the command line).

    Both columns are written whatever the row held when it was read: left to the unit of
    work, only the ones that changed since then were sent, and a failure that locked the
    account after the read kept its lock, under an answer that said "unlocked".
    ``only_if_locked``: nothing is written or audited unless the row, as the UPDATE finds
    it (after waiting for a failure in flight), counts failures or holds a lock-out.
    Returns whether it was written."""
    statement = update(User).where(User.id == user.id)
    if only_if_locked:
        statement = statement.where(or_(
            User.current_failed_logins != 0, User.locked_until.is_not(None), User.window_failed_logins != 0))
    written = request.dbsession.execute(
        statement.values(current_failed_logins=0, locked_until=None, window_failed_logins=0)
        .execution_options(synchronize_session=False)
    ).rowcount > 0
    set_committed_value(user, "current_failed_logins", 0)
    set_committed_value(user, "locked_until", None)
    set_committed_value(user, "window_failed_logins", 0)
    if written:
        who = by.username if isinstance(by, User) else by
        audit.record(request, Event.UNLOCKED, user, f"by {who}" if who else "")
    return written
