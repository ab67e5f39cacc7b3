"""WebSudo (Atlassian's "secure administrator sessions", OWASP ASVS 3.7.1): a cookie session
must have confirmed its password within ``appserver.websudo.timeout`` seconds before it may
reach an administration page or action. The window rolls: each admin request extends it.

The elevation is ``sessions.websudo_at``, so every process sees it and logging out (which
revokes the session) drops it. Basic and Bearer requests present their credentials every
time and are exempt, as in Jira.

Views ask for it with the view option ``websudo=True``; code that needs it only sometimes
(an administrator reading another user's token) calls :func:`require`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response
from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ..errors import is_rest
from ..models import UserSession, is_read_only
from ..rendering import json_response
from ..models.units import attach, unit, writing
from . import audit
from .audit import Event
from .login import Attempt, Outcome, check_user_password, unchanged_since_check
from .redirects import safe_destination
from .responses import session_challenge
from .sessions import acting_session_ended

#: Jira's answer to a REST call of a ``@WebSudoRequired`` resource.
REST_MESSAGE = "This resource requires WebSudo."
#: Jira's header on a successful confirmation.
HEADER = ("X-Atlassian-WebSudo", "Has-Authentication")


def _session(request: Request) -> UserSession | None:
    """The cookie session WebSudo applies to. None for anonymous requests, and for Basic and
    Bearer ones: they have no session, presenting their credentials every time (exempt)."""
    identity = request.authentication.identity
    return identity.session if identity is not None else None


def remaining(request: Request) -> int | None:
    """Seconds left of this session's elevation, or None when it has none."""
    session = _session(request)
    if session is None or session.websudo_at is None or session.revoked_at is not None:
        return None
    left = (session.websudo_at + timedelta(seconds=request.appserver_settings.websudo_timeout)) - request.now
    seconds = int(left.total_seconds())
    return seconds if seconds > 0 else None


def _write(db: Session, session: UserSession, value: datetime | None, *, unchanged_from: datetime | None = None,
           forget_password: bool = False) -> None:
    """``unchanged_from``: write only if the elevation is still the one the request read.
    An extension written after a drop (or a new confirmation) committed would otherwise undo
    it: an admin request in flight while the person dropped WebSudo kept it for another
    whole window. ``forget_password``: the session's last password check stops counting
    too (a drop)."""
    condition = [UserSession.id == session.id, UserSession.revoked_at.is_(None)]
    if unchanged_from is not None:
        condition.append(UserSession.websudo_at == unchanged_from)
    values: dict[str, datetime | None] = {"websudo_at": value}
    if forget_password:
        values["password_at"] = None
    db.execute(
        update(UserSession)
        .where(*condition)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def _set(
    request: Request, session: UserSession, value: datetime | None, *, unchanged_from: datetime | None = None,
    forget_password: bool = False,
) -> None:
    # A GET extends the window too: a safe request writes in a unit of its own.
    with writing(request) as db:
        _write(db, session, value, unchanged_from=unchanged_from, forget_password=forget_password)
    set_committed_value(session, "websudo_at", value)
    if forget_password:
        set_committed_value(session, "password_at", None)


def _extend(request: Request, session: UserSession) -> None:
    """Roll the window on. A request that writes does it after its transaction committed,
    in a unit of its own: inside the transaction the UPDATE locked the administrator's own
    session before the account, tokens and sessions the action takes (the one lock order
    puts sessions last), and two administrators acting on each other deadlocked. If the
    action fails, the window is not extended. Either way only the elevation this request
    read is extended (see :func:`_write`)."""
    read, now = session.websudo_at, request.now
    if is_read_only(request):
        _set(request, session, now, unchanged_from=read)  # a unit of its own already
        return
    set_committed_value(session, "websudo_at", now)

    def extend(committed: bool) -> None:
        if committed:
            with unit(request, write=True, after_commit=True) as db:
                _write(db, session, now, unchanged_from=read)

    request.tm.get().addAfterCommitHook(extend)


#: Why a token needs a recent password, under /rest (the form's prompt says it for pages).
RECENT_PASSWORD_MESSAGE = (
    "Making a personal access token needs your password within the last {minutes}: log in again, "
    "send Basic credentials, or confirm your password at /websudo."
)


def require(request: Request, *, recent_password: bool = False) -> Response | None:
    """None when this request may go on (elevated, exempt, or WebSudo is off); otherwise the
    answer: Jira's 401 under /rest, a redirect to the password prompt elsewhere. An elevated
    request extends the window (rolling).

    ``recent_password`` (making a token): a session whose login checked the password within
    the window counts too, without extending anything: a fresh login need not confirm it
    again, but a cookie copied from an older one (or a remember-me login, which checked
    none) cannot mint a credential that outlives every log-out (an outside review)."""
    settings = request.appserver_settings
    if not settings.websudo_enabled:
        return None
    session = _session(request)
    if session is None:
        return None
    if remaining(request) is not None:
        _extend(request, session)
        return None
    if recent_password and session.password_at is not None and (
        request.now - session.password_at < timedelta(seconds=settings.websudo_timeout)
    ):
        return None
    if is_rest(request):
        # Jira's body, and this project's shape of every /rest error beside it: a client that
        # reads either finds the reason.
        reason = RECENT_PASSWORD_MESSAGE.format(minutes=window_text(settings.websudo_timeout)) if recent_password \
            else REST_MESSAGE
        response = json_response(
            {"message": REST_MESSAGE, "status-code": 401, "errorMessages": [reason], "errors": {}}, 401
        )
        response.headers["WWW-Authenticate"] = session_challenge(request)
        response.headers["Cache-Control"] = "no-store"
        return response
    return HTTPSeeOther(prompt_url(request))


def prompt_url(request: Request) -> str:
    """The prompt, returning to this page; after a POST, to the page the form was on (the
    POST itself is never replayed: the person submits it again, knowingly)."""
    if request.method == "GET":
        destination = request.path_qs
        query = {"os_destination": destination}
    else:
        destination = _referring_page(request)
        query = {"os_destination": destination, "resubmit": "1"}
    return request.route_url("websudo", _query=query)


def _referring_page(request: Request) -> str:
    """The page the form was on (the Referer, when it is this site); else the administrator's
    users page, or anyone else's account page (a token's form: the users page is a 403)."""
    user = request.user
    fallback = request.route_path("admin.users" if user is not None and user.admin else "account")
    referer = request.referer or ""
    origin = request.host_url
    if referer.startswith(origin + "/"):
        return safe_destination(referer[len(origin):], fallback)
    return fallback


@dataclass(frozen=True)
class Confirmation:
    attempt: Attempt
    #: The rotated session's cookie, for the response (see :func:`confirm`).
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: The password was right, but while it was checked the session ended (a log-out
    #: elsewhere), the password changed or the account was deactivated: log in again.
    ended: bool = False


def confirm(request: Request, password: str) -> Confirmation:
    """Check the password of the logged-in user like a login (a wrong one counts towards the
    lock-out) and, if right, elevate the session under a new token (OWASP: a new session id
    at every change of privilege): a copy of the cookie taken before the elevation is
    refused from now on, instead of sharing it. A re-authentication, checked as a login is:
    the account's row locked, the password and the session still the ones checked."""
    session = _session(request)
    user = request.user
    attempt = check_user_password(request, user, password, channel="websudo")
    if not attempt.ok:
        audit.record(request, Event.WEBSUDO_REFUSED, user, attempt.outcome.value)
        return Confirmation(attempt)
    headers: list[tuple[str, str]] = []
    if session is not None:
        checked_hash = user.password_hash  # the hash the password was just verified against
        if not unchanged_since_check(request, attach(request.dbsession, user), checked_hash) or (
            acting_session_ended(request)
        ):
            return Confirmation(attempt, ended=True)
        headers = request.registry.security_policy.rotate(request, websudo_at=request.now, password_checked=True)
    audit.record(request, Event.WEBSUDO_GRANTED, user)
    return Confirmation(attempt, headers)


def drop(request: Request, *, revoking: bool = False) -> bool:
    """End this session's elevation now; True when there was one. ``revoking``: the session
    is being revoked (a log-out), which ends its elevation with it; only the audit is left
    to do, and no write to the session's row, which would lock it before the log-out locks
    the remember-me tokens (the one lock order is tokens, then sessions).

    The login's own password check stops counting for a token too: after a drop, a cookie
    (a copy left in a shared browser, say) mints no token until the password is typed again
    (an outside review)."""
    session = _session(request)
    if session is None or (session.websudo_at is None and session.password_at is None):
        return False
    elevated = remaining(request) is not None
    if not revoking:
        _set(request, session, None, forget_password=True)
    if elevated:
        audit.record(request, Event.WEBSUDO_DROPPED, request.user)
    return elevated


def websudo_view_deriver(view, info):
    """The view option ``websudo=True``: runs after the permission check, so anonymous
    visitors still go to the login page and non-admins still get a 403."""
    if not info.options.get("websudo"):
        return view

    def websudo_view(context, request):
        refused = require(request)
        if refused is not None:
            return refused
        return view(context, request)

    return websudo_view


websudo_view_deriver.options = ("websudo",)


def includeme(config: Configurator) -> None:
    config.add_view_deriver(websudo_view_deriver)


def window_text(seconds: int) -> str:
    """The WebSudo window in words, for the REST message and the prompt: "10 minutes",
    "15 seconds" (a window under a minute read "1 minute" on the prompt)."""
    count, unit = (seconds, "second") if seconds % 60 else (seconds // 60, "minute")
    return f"{count} {unit}" + ("" if count == 1 else "s")
