"""The security policy: one small source per kind of credential, asked in order.

Explicit credentials (the ``Authorization`` header: Basic or a Bearer personal access token)
come first and beat any cookie, then the session cookie, then the remember-me cookie
(Seraph's order, except that Basic and Bearer win over a stale cookie). The result, with the source that produced it, is computed once
per request and cached (Pyramid does not cache ``request.identity`` itself).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime

from pyramid.authorization import ACLHelper, Authenticated, Everyone
from pyramid.request import Request
from pyramid.security import Allowed, Denied

from sqlalchemy.orm import Session

from ..models import User, UserSession
from ..models.units import attach, unit
from . import audit, client
from .audit import Event
from .basic import parse_authorization
from .cookies import delete_cookie, set_cookie
from .identity import Authentication, BasicState, Identity, Source
from .login import Outcome, check_password, note_login
from .paths import credential_free
from .personal_tokens import TokenState, TokenStore, bearer_credentials, record_refusal
from .remember import RememberState, RememberStore
from .request_local import RequestAttributeCache
from .sessions import CookieState, IssuedSession, SessionEnded, SessionStore, add_successors
from .touches import RecentTouches, touch_once

ADMIN = "role:admin"
#: Where a request keeps its Authentication: the name of the reified ``request.authentication``
#: (appserver/security/__init__.py), so that reading the attribute is a dict lookup.
AUTHENTICATION_KEY = "authentication"


def user_principal(user_id: int) -> str:
    return f"user:{user_id}"


class BasicAuthSource:
    """HTTP Basic: checked on every request that sends it; never creates a session row."""

    def authenticate(self, request: Request, auth: Authentication) -> None:
        header = request.headers.get("Authorization")
        credentials = parse_authorization(header)
        if credentials is None or bearer_credentials(header) is not None:
            return
        if credentials.malformed:
            auth.basic = BasicState.MALFORMED
            return
        attempt = check_password(
            request, credentials.username, credentials.password, channel="basic"
        )
        if attempt.outcome is Outcome.OK:
            auth.basic = BasicState.VALID
            auth.identity = Identity(attempt.user, Source.BASIC)
        elif attempt.outcome is Outcome.DENIED:
            auth.basic = BasicState.DENIED
            auth.retry_after = attempt.retry_after
        else:
            auth.basic = BasicState.WRONG


class BearerTokenSource:
    """``Authorization: Bearer`` with a personal access token: one indexed SELECT per
    request, never a session row or a cookie. A token that cannot be used is a 401 (the
    authentication tween), never anonymous: stricter than Jira."""

    def __init__(self) -> None:
        self.touches = RecentTouches()

    def authenticate(self, request: Request, auth: Authentication) -> None:
        raw = bearer_credentials(request.headers.get("Authorization"))
        if raw is None:
            return
        lookup = TokenStore.reader(request).lookup(raw)
        state = lookup.state
        # lastAccessedAt, at most once per touch interval (and per process: touches.py)
        if lookup.due_touch and not touch_once(
            request, self.touches, ("token", lookup.token.secret_hash, lookup.token.last_accessed_at),
            lambda db: TokenStore.of(request, db).touch(lookup.token),
        ):
            state = TokenState.REVOKED  # revoked while this request was on its way
        auth.bearer = state
        if state is TokenState.VALID:
            auth.identity = Identity(lookup.user, Source.BEARER, token=lookup.token)
        else:
            record_refusal(request, state, lookup)


class SessionCookieSource:
    """The server-side session named by the session cookie."""

    def __init__(self) -> None:
        self.touches = RecentTouches()

    def authenticate(self, request: Request, auth: Authentication) -> None:
        settings = request.appserver_settings
        token = request.cookies.get(settings.session_cookie)
        if token is None:
            return
        lookup = SessionStore.reader(request).lookup(token)
        state = lookup.state
        revoked_on_the_way = False
        # Only a session that serves the request is touched: Basic or a token beats the
        # cookie (``explicit``), and a client that sends both must not keep an unused
        # session from idling out.
        if lookup.due_touch and not auth.explicit and not touch_once(
            request, self.touches,
            ("session", lookup.session_value("token_hash"), lookup.session_value("last_seen_at")),
            lambda db: SessionStore.of(request, db).touch(lookup.session),
        ):
            state = CookieState.REVOKED  # revoked while this request was on its way
            revoked_on_the_way = True
        auth.cookie = state
        auth.presented = lookup  # its objects are made when something asks for them
        if state is CookieState.LIVE:
            if not auth.explicit:
                auth.identity = Identity.from_lookup(lookup, Source.SESSION)
            return
        if state is CookieState.REVOKED and (lookup.session_value("replaced_by_id") is not None or revoked_on_the_way):
            # Another tab's rotation replaced this session moments ago, and its answer, with
            # the new cookies, may not have reached the browser yet. Deleting the cookie
            # here, or starting a session from the remember-me cookie, would overwrite them
            # if this answer came last: the browser logged out, its WebSudo confirmation
            # lost, the new session live with no cookie for a log-out to end (an outside
            # review). So this answer, stale as any, changes no login cookie. It serves
            # nothing either: a copy of the old cookie is worth nothing the moment a
            # password change or "log out other sessions" commits. (A log-out with it ends
            # the new session: ``login.log_out``.)
            with unit(request) as db:
                # Revoked between the lookup and its touch: the row as the rotation left it.
                presented = db.get(UserSession, lookup.session.id) if revoked_on_the_way else lookup.session
                if presented is not None:
                    auth.rotated_to = SessionStore.of(request, db).rotated_successor(presented)
        if auth.rotated_to is None:
            auth.cookies[settings.session_cookie] = delete_cookie(settings, settings.session_cookie)
        if state in (CookieState.EXPIRED, CookieState.REVOKED):
            with unit(request, write=True) as db:
                audit.record(request, Event.SESSION_EXPIRED, lookup.user, state.value, db=db)

    def issue(
        self, request: Request, user: User, auth: Authentication, db: Session | None = None,
        also: Iterable[int] = (), password_at: datetime | None = None,
    ) -> tuple[IssuedSession, str]:
        """A new session for ``user`` in ``db`` (the request's unit of work by default); the
        ones the client presented and was served by are revoked (no fixation), and those
        ``also`` names (the sessions the client's ended remembered login started)."""
        store = SessionStore.of(request, db)
        for session in _sessions_of(auth, store.db, also):
            store.revoke(session)
        issued = store.issue(
            user,
            user_agent=client.user_agent(request),
            remote_addr=client.address(request),
            password_at=password_at,
        )
        settings = request.appserver_settings
        return issued, set_cookie(settings, settings.session_cookie, issued.token, settings.max_age)

    def end(
        self, request: Request, auth: Authentication, ended: list[UserSession] | None = None,
        also: Iterable[int] = (),
    ) -> str:
        """Revoke the sessions of the request (:func:`_sessions_of`) and those ``also``
        names; those this call revoked (not a parallel log-out) are added to ``ended``."""
        for session in _sessions_of(auth, request.dbsession, also):
            if request.session_store.revoke(session) and ended is not None:
                ended.append(session)
        settings = request.appserver_settings
        return delete_cookie(settings, settings.session_cookie)


def _sessions_of(auth: Authentication, db: Session | None = None, also: Iterable[int] = ()) -> list[UserSession]:
    """The session the cookie named and the one the request was served by, in id order (the
    lock order among sessions). They differ when a tab's remember-me rotation just started a
    session and this request presented the old cookies (the grace): a log-out or a new
    login must end both. With ``also``, the sessions of those ids too, read from ``db``."""
    served_by = auth.identity.session if auth.identity is not None else None
    sessions = {session.id: session for session in (auth.presented_session, served_by) if session is not None}
    for session_id in also:
        if session_id not in sessions and (session := db.get(UserSession, session_id)) is not None:
            sessions[session_id] = session
    if db is not None:
        # A rotation in another tab (WebSudo, a password change) that committed while this
        # request waited for the account's row replaced a session this request was served
        # by: its new one is this browser's too (an outside review: it outlived the log-out,
        # elevated). Only those: a copy of a cookie that was stale when it came must not
        # reach the session that replaced it (it could log the browser out).
        chain = {session.id: session for session in (served_by, auth.presented_session)
                 if session is not None and (session is served_by or auth.cookie is CookieState.LIVE)}
        add_successors(db, chain)
        sessions.update(chain)
    return [session for _, session in sorted(sessions.items())]


#: In the WSGI environ, which pyramid_retry keeps across the attempts of one request: the
#: remember-me cookie an attempt rotated, the session it started and the cookies it set.
ROTATED_KEY = "appserver.remember.rotated"


class RememberMeSource:
    """The remember-me cookie: when no session is live, it starts a new one, silently.

    The rotation, the new session and the audit are one unit of work of their own: their
    cookies reach the client on whatever response this request ends with, so they must be
    in the database whatever the request does next."""

    def authenticate(self, request: Request, auth: Authentication, sessions: SessionCookieSource) -> None:
        settings = request.appserver_settings
        value = request.cookies.get(settings.remember_cookie)
        if value is None or auth.identity is not None or auth.explicit or auth.rotated_to is not None:
            return
        expired = auth.presented_session if auth.cookie is CookieState.EXPIRED else None
        with unit(request, write=True) as db:
            lookup = RememberStore.of(request, db).use(value)
            auth.remember = lookup.state
            if lookup.state is RememberState.USED:
                note_login(request, lookup.user)
                audit.record(request, Event.REMEMBER_USED, lookup.user, db=db)
                issued, header = sessions.issue(request, lookup.user, auth, db)
                # Replays of the replaced token inside the grace are served by this session.
                RememberStore.of(request, db).record_successor(lookup.token_id, issued.session)
                remaining = int((lookup.expires_at - request.now).total_seconds())
                cookies = {
                    **auth.cookies,
                    settings.session_cookie: header,
                    settings.remember_cookie: set_cookie(
                        settings, settings.remember_cookie, lookup.cookie_value, remaining
                    ),
                }
                # If this request is run again (pyramid_retry: a transient error from here
                # on), the next attempt presents the token just replaced; it must still send
                # the client the cookies committed here, or the browser keeps the old token
                # and its use after the grace reads as theft. Kept before the commit: an
                # error of the COMMIT itself (a lost acknowledgement) may come after the
                # rotation is in the database.
                request.environ[ROTATED_KEY] = (value, issued.session.id, cookies)
            elif lookup.state is RememberState.THEFT:
                # Whoever holds a copy of the cookie may also hold a session made from it.
                SessionStore.of(request, db).revoke_user_sessions(lookup.user.id)
                audit.record(request, Event.REMEMBER_THEFT, lookup.user, db=db)
            elif lookup.state is RememberState.REUSED:
                audit.record(request, Event.REMEMBER_REUSED, lookup.user, db=db)
        if expired is not None and lookup.user is not None and expired.user_id == lookup.user.id:
            replaced = expired  # the same browser's login, idled out: see Authentication
        else:
            replaced = None
        if lookup.state is RememberState.USED:
            auth.identity = Identity(lookup.user, Source.REMEMBER, issued.session)
            auth.replaced_session = replaced
            auth.presented_session = issued.session
            auth.cookies.update(cookies)
            return
        if lookup.state is RememberState.GRACE:
            # A parallel request of the browser that just rotated the token: it is served by
            # the session that rotation started, and changes no cookie (the rotating response
            # sets them), so replays never multiply sessions.
            auth.cookies.pop(settings.session_cookie, None)
            if lookup.successor is not None:
                auth.identity = Identity(lookup.user, Source.REMEMBER, lookup.successor)
                auth.replaced_session = replaced
                rotated = request.environ.get(ROTATED_KEY)
                if rotated is not None and rotated[:2] == (value, lookup.successor.id):
                    # The same request, run again: its first attempt did the rotation.
                    auth.presented_session = lookup.successor
                    auth.cookies.update(rotated[2])
            return
        auth.cookies[settings.remember_cookie] = delete_cookie(settings, settings.remember_cookie)

    def issue(self, request: Request, user: User) -> tuple[str, int]:
        """The Set-Cookie header of a new series for ``user``, and the series' row id (the
        caller has ended the series the client presented: a new login never keeps it)."""
        settings = request.appserver_settings
        value, row = request.remember_store.issue(user)
        return set_cookie(settings, settings.remember_cookie, value, settings.remember_max_age), row.id

    def end(self, request: Request) -> tuple[str, list[int]]:
        """Revoke the series the client presented: the header that deletes its cookie, and
        the ids of the sessions it started (:meth:`RememberStore.revoke_series`)."""
        settings = request.appserver_settings
        value = request.cookies.get(settings.remember_cookie)
        started = request.remember_store.revoke_series(value) if value is not None else []
        return delete_cookie(settings, settings.remember_cookie), started


def presents_credentials(request: Request) -> bool:
    """Whether the request could carry a credential at all: every kind this policy knows
    (Basic, Bearer, the session and remember-me cookies) arrives in the ``Authorization`` or
    the ``Cookie`` header. Without either, no source needs to look (most anonymous requests)."""
    environ = request.environ
    return "HTTP_AUTHORIZATION" in environ or "HTTP_COOKIE" in environ


class AppSecurityPolicy:
    """Pyramid 2 ``ISecurityPolicy`` combining the sources above, with ACL permissions."""

    def __init__(self) -> None:
        self.basic = BasicAuthSource()
        self.bearer = BearerTokenSource()
        self.session = SessionCookieSource()
        self.remember_me = RememberMeSource()
        self._cache = RequestAttributeCache(self._authenticate, AUTHENTICATION_KEY)
        self._acl = ACLHelper()

    def _authenticate(self, request: Request) -> Authentication:
        """Every source, each in units of work of its own (read, then write if it must);
        the request's own transaction has not begun yet."""
        auth = Authentication()
        if credential_free(request) or not presents_credentials(request):
            return auth
        self.basic.authenticate(request, auth)
        self.bearer.authenticate(request, auth)
        self.session.authenticate(request, auth)
        self.remember_me.authenticate(request, auth, self.session)
        if auth.identity is not None and "dbsession" in request.__dict__:
            attach(request.dbsession, auth.identity.user)
            attach(request.dbsession, auth.identity.session)
        return auth

    def authentication(self, request: Request) -> Authentication:
        return self._cache.get_or_create(request)

    def computed(self, request: Request) -> Authentication | None:
        """The authentication of this request if it ran already (None otherwise)."""
        return self._cache.get(request, None)

    def unauthenticated(self, request: Request) -> None:
        """Treat the rest of this request as presenting nothing: for the answer to a request
        whose credentials could not be checked (database down), or that failed (a 500, a
        503), never for serving it. The cookie changes already decided on are kept, as
        :meth:`refuse` keeps them: a remember-me rotation committed in its own unit before
        the view failed must reach the browser, or its next visit presents the replaced
        token, which after the grace reads as a replay and ends the remembered login."""
        computed = self.computed(request)
        self._cache.set(request, Authentication(cookies=dict(computed.cookies) if computed else {}))

    def refuse(self, request: Request) -> None:
        """Answer the rest of this request as anonymous although its credentials were good
        (``os_authType`` asked for another kind): a 401 must not name a user. What was
        presented, and the cookie changes already decided on (a rotated remember-me token),
        are kept."""
        self._cache.set(request, dataclasses.replace(self.authentication(request), identity=None))

    # ISecurityPolicy

    def identity(self, request: Request) -> Identity | None:
        return self.authentication(request).identity

    def authenticated_userid(self, request: Request) -> str | None:
        identity = self.identity(request)
        return str(identity.account.id) if identity else None

    def principals(self, request: Request) -> list[str]:
        principals = [Everyone]
        identity = self.identity(request)
        if identity is not None:
            account = identity.account  # no ORM object made for it
            principals += [Authenticated, user_principal(account.id)]
            if account.admin:
                principals.append(ADMIN)
        return principals

    def permits(self, request: Request, context: object, permission: str) -> Allowed | Denied:
        return self._acl.permits(context, self.principals(request), permission)

    def remember(
        self, request: Request, userid: int, user: User | None = None, persistent: bool = False, **kw
    ) -> list:
        """Issue a new session for the user (revoking the presented session and remember-me
        series): the login step. ``persistent`` adds a remember-me cookie."""
        user = user if user is not None else request.dbsession.get(User, int(userid))
        user = attach(request.dbsession, user)
        previous = self.authentication(request)
        # Remember-me tokens before sessions (after the account, which log_in locked): the
        # one lock order of docs/concurrency.md, so no two transactions wait in a circle.
        remembered, series_id, started = None, None, []
        if request.appserver_settings.remember_cookie in request.cookies:
            remembered, started = self.remember_me.end(request)
        if persistent:
            remembered, series_id = self.remember_me.issue(request, user)
        # The login step, after the password check: a password login's session.
        issued, header = self.session.issue(request, user, previous, also=started, password_at=request.now)
        if series_id is not None:
            # The series' session, as each rotation records it: logging this session out
            # from another browser ends the series too (accounts.revoke_session).
            request.remember_store.record_successor(series_id, issued.session)
        headers = [("Set-Cookie", header)]
        if remembered is not None:
            headers.append(("Set-Cookie", remembered))
        self._cache.set(
            request,
            Authentication(
                identity=Identity(user, Source.LOGIN, issued.session),
                cookie=CookieState.LIVE,
                presented=issued.session,
                issued=issued,
            ),
        )
        return headers

    def rotate(
        self, request: Request, *, websudo_at: datetime | None = None, renew_remembered: bool = False,
        password_checked: bool = False,
    ) -> list:
        """The same login under a new session token: the sessions the request presented and
        was served by are revoked, so a copy of the cookie taken before is worth nothing now.
        For a re-authentication (a WebSudo confirmation, ``websudo_at``: the copy gains
        nothing from the elevation) and a change of credentials (a password change, "log
        out other sessions": ``renew_remembered`` also replaces the browser's remembered
        login, which the caller kept, with a new series). Otherwise a remembered login stays,
        and names the new session.

        The caller has locked the account's row and seen the session still live; if a
        revocation got in nonetheless, :class:`SessionEnded` (the transaction is aborted).
        The new row is inserted first (no other transaction can see it, so it locks
        nothing), then the remember-me tokens and the old sessions, the one lock order. (After
        a password change's revocations the tokens come after sessions; the account's row,
        which every transaction that takes both locks first, keeps them from waiting for
        each other in a circle.)"""
        previous = self.authentication(request)
        user = attach(request.dbsession, previous.identity.user)
        settings = request.appserver_settings
        store = request.session_store
        # The login's absolute lifetime, not a new one: "log out other sessions", repeated,
        # would otherwise keep a session (a stolen one too) alive for ever (an outside review).
        expires_at = previous.identity.session.expires_at
        # The last password check of this login, carried over; a new one when this request
        # checked the password (a WebSudo confirmation, a password change).
        checked = request.now if password_checked else previous.identity.session.password_at
        issued = store.issue(
            user, user_agent=client.user_agent(request), remote_addr=client.address(request), websudo_at=websudo_at,
            expires_at=expires_at, password_at=checked,
        )
        replaced = _sessions_of(previous)
        left = max(int((expires_at - request.now).total_seconds()), 1)
        headers = [("Set-Cookie", set_cookie(settings, settings.session_cookie, issued.token, left))]
        if renew_remembered:
            presented = request.cookies.get(settings.remember_cookie)
            series = request.remember_store.current_series(presented, user.id)
            if series is not None:
                value = request.remember_store.replace(series, issued.session)
                left = int((series.expires_at - request.now).total_seconds())
                headers.append(("Set-Cookie", set_cookie(settings, settings.remember_cookie, value, left)))
            elif presented is not None:  # revoked with the others (a stale copy, or none of ours)
                headers.append(("Set-Cookie", delete_cookie(settings, settings.remember_cookie)))
        else:
            for session in replaced:
                request.remember_store.pass_on(session, issued.session)
        served = previous.identity.session
        for session in replaced:
            if not store.revoke(session, replaced_by=issued.session) and served is not None and session.id == served.id:
                raise SessionEnded()
        set_here = {value.split("=", 1)[0] for _, value in headers}
        self._cache.set(
            request,
            dataclasses.replace(
                previous,
                identity=Identity(user, previous.identity.source, issued.session),
                presented=issued.session,
                cookies={name: value for name, value in previous.cookies.items() if name not in set_here},
            ),
        )
        return headers

    def forget(self, request: Request, ended: list[UserSession] | None = None, **kw) -> list:
        """Revoke the session and the remember-me series on the server and delete both
        cookies: the logout step. ``ended`` (``forget(request, ended=[])``) receives the
        sessions this call revoked."""
        remembered, started = self.remember_me.end(request)  # tokens before sessions (see remember)
        auth = self.authentication(request)
        rotated: dict[int, UserSession] = {}
        if auth.rotated_to is not None:
            # The cookies from before another tab's rotation, moments ago: the session it
            # started is this browser's login now, and a log-out ends it (an outside review:
            # "You have logged out", the browser still logged in, elevated), with the
            # remembered login that rotation started for it (a password change replaces the
            # series), or the new cookies would log the browser in again. A copy of the old
            # cookie can log the browser out for those 30 s; it gains nothing. (A new login
            # with it does not reach them: see _sessions_of.)
            rotated = {auth.rotated_to.id: auth.rotated_to}
            add_successors(request.dbsession, rotated)
            for session in rotated.values():
                request.remember_store.revoke_for_session(session)
        headers = [
            ("Set-Cookie", self.session.end(request, auth, ended, also=[*started, *rotated])),
            ("Set-Cookie", remembered),
        ]
        self._cache.set(request, Authentication())
        return headers
