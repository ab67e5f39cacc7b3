"""CSRF tokens bound to the login session.

A logged-in user's token is an HMAC of the session (keyed by ``appserver.secret``), so it
changes with every login and needs no storage; a Bearer request's, of its personal access
token (no cookie is ever set for one); a Basic request's, of the account and the browser's
double-submit cookie. Anonymous visitors (the login form: login CSRF) get Pyramid's
double-submit cookie token.
"""
from __future__ import annotations

import hashlib
import hmac

from pyramid.csrf import CookieCSRFStoragePolicy
from pyramid.interfaces import ICSRFStoragePolicy
from pyramid.request import Request
from zope.interface import implementer

from ..models import UserSession
from ..settings import AppSettings

#: Where a form sends its token, and where a script (or a fuzz test) may send it instead.
TOKEN_FIELD = "csrf_token"
TOKEN_HEADER = "X-CSRF-Token"


@implementer(ICSRFStoragePolicy)
class SessionBoundCSRFStoragePolicy:
    def __init__(self, settings: AppSettings) -> None:
        self._key = settings.secret.encode("utf-8")
        self._anonymous = CookieCSRFStoragePolicy(
            cookie_name="__Host-csrf" if settings.secure_cookies else "csrf",
            secure=settings.secure_cookies,
            httponly=True,
            samesite="Lax",
            path="/",
        )

    def _bound(self, request: Request) -> str | None:
        identity = request.authentication.identity
        if identity is not None and identity.token is not None:
            # A Bearer request never gets a cookie, the anonymous CSRF cookie included.
            message = b"csrf-token:" + identity.token.secret_hash.encode("ascii")
        elif identity is not None and identity.session is not None:
            return self._of_session(identity.session)
        elif identity is not None:
            # Basic has no session to bind to, and a browser sends it by itself to a forged
            # form too. The double-submit cookie alone could be planted (in development any
            # page of 127.0.0.1 sets one), with the matching field: an outside review had a
            # forged pair revoke sessions. Bound to the account by the HMAC, a planted value
            # is worth nothing without the secret.
            cookie = self._anonymous.get_csrf_token(request)
            message = b"csrf-basic:%d:" % identity.user.id + cookie.encode("utf-8", "replace")
        else:
            return None
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def _of_session(self, session: UserSession) -> str:
        return hmac.new(self._key, b"csrf:" + session.token_hash.encode("ascii"), hashlib.sha256).hexdigest()

    def new_csrf_token(self, request: Request) -> str:
        return self._bound(request) or self._anonymous.new_csrf_token(request)

    def get_csrf_token(self, request: Request) -> str:
        return self._bound(request) or self._anonymous.get_csrf_token(request)

    def check_csrf_token(self, request: Request, supplied_token: str) -> bool:
        expected = self._bound(request)
        if expected is None:
            return self._anonymous.check_csrf_token(request, supplied_token)
        supplied = (supplied_token or "").encode("utf-8")
        if hmac.compare_digest(expected.encode("ascii"), supplied):
            return True
        # A page rendered for the session that idled out, sent with the remember-me cookie
        # that just logged the same browser in again (identity.replaced_session).
        replaced = request.authentication.replaced_session
        return replaced is not None and hmac.compare_digest(self._of_session(replaced).encode("ascii"), supplied)
