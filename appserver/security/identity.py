"""What a request presented, and what came of it.

The security policy computes one :class:`Authentication` per request. The tweens read it to
apply the seed's rules (a stale cookie under ``/rest`` is a 401, failed Basic credentials are
a 401, ``os_authType`` demands a kind of credential), views read ``request.user``.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..models import PersonalToken, User, UserSession
from .account import Account
from .personal_tokens import TokenState
from .remember import RememberState
from .sessions import CookieState, IssuedSession, SessionLookup


class BasicState(enum.Enum):
    ABSENT = "absent"
    VALID = "valid"
    WRONG = "wrong"  # unknown user, wrong password or inactive account: one answer for all
    MALFORMED = "malformed"  # undecodable, no colon, or a scheme we do not accept
    DENIED = "denied"  # too many failures: the password was not checked

    @property
    def failed(self) -> bool:
        return self in (BasicState.WRONG, BasicState.MALFORMED)


class Source(enum.Enum):
    SESSION = "session"
    BASIC = "basic"
    REMEMBER = "remember"
    LOGIN = "login"  # logged in by this very request
    BEARER = "bearer"  # a personal access token (Authorization: Bearer)


class Identity:
    """Who a request is served as, and by which credential. ``user`` and ``session`` are ORM
    objects; an identity made from a session lookup makes them on first use, and
    :attr:`account` says who it is without them (a steady cookie request never needs them)."""

    __slots__ = ("source", "token", "_user", "_session", "_lookup")

    def __init__(
        self, user: User | None, source: Source, session: UserSession | None = None,
        token: PersonalToken | None = None,  # with Source.BEARER
    ) -> None:
        self.source = source
        self.token = token
        self._user = user
        self._session = session
        self._lookup: SessionLookup | None = None

    @classmethod
    def from_lookup(cls, lookup: SessionLookup, source: Source) -> Identity:
        """Served by the session a cookie named (its objects made when asked for)."""
        identity = cls(None, source)
        identity._lookup = lookup
        return identity

    @property
    def user(self) -> User:
        return self._lookup.user if self._lookup is not None else self._user

    @property
    def session(self) -> UserSession | None:
        return self._lookup.session if self._lookup is not None else self._session

    @property
    def account(self) -> User | Account:
        """Who it is: the user object where there is one, else the lookup's snapshot."""
        return self._lookup.account if self._lookup is not None else self._user

    @property
    def cookie_based(self) -> bool:
        return self.source in (Source.SESSION, Source.REMEMBER, Source.LOGIN)

    @property
    def basic(self) -> bool:
        """Checked by the password this very request sent (HTTP Basic)."""
        return self.source is Source.BASIC

    def __repr__(self) -> str:
        return f"<Identity {self.account.username!r} by {self.source.value}>"


@dataclass
class Authentication:
    identity: Identity | None = None
    cookie: CookieState = CookieState.ABSENT
    basic: BasicState = BasicState.ABSENT
    bearer: TokenState = TokenState.ABSENT
    remember: RememberState = RememberState.ABSENT
    #: The session the cookie named, whatever its state (login revokes it: no fixation): the
    #: lookup, whose objects are made when asked for (``presented_session``), or a session.
    presented: SessionLookup | UserSession | None = None
    #: Seconds until a locked account may try again (with BasicState.DENIED).
    retry_after: int | None = None
    #: Set-Cookie headers the response must carry (stale-cookie deletion, re-issued cookies),
    #: keyed by cookie name; applied by the authentication tween.
    cookies: dict[str, str] = field(default_factory=dict)
    #: The session this request issued by logging in (the REST login returns its token).
    issued: IssuedSession | None = None
    #: The expired session the cookie named, which this request's remember-me login
    #: replaced: the forms of a page rendered for it are this browser's, and the CSRF check
    #: accepts their token (a page left open past the idle timeout, its Log out button).
    replaced_session: UserSession | None = None
    #: The live session a rotation in another tab of this browser (a WebSudo confirmation, a
    #: password change, "log out other sessions") started moments ago in place of the one
    #: the cookie named: the rotating answer sets the browser's cookies, and this request,
    #: answered as a stale cookie, neither deletes nor replaces them (``ROTATION_GRACE``).
    rotated_to: UserSession | None = None

    @property
    def presented_session(self) -> UserSession | None:
        presented = self.presented
        return presented.session if isinstance(presented, SessionLookup) else presented

    @presented_session.setter
    def presented_session(self, session: UserSession | None) -> None:
        self.presented = session

    @property
    def user(self) -> User | None:
        return self.identity.user if self.identity else None

    @property
    def account(self) -> User | Account | None:
        """Who the request is served as, without making an ORM object (Identity.account)."""
        return self.identity.account if self.identity else None

    @property
    def explicit(self) -> bool:
        """An Authorization header (Basic or Bearer) was sent: it beats any cookie."""
        return self.basic is not BasicState.ABSENT or self.bearer is not TokenState.ABSENT

    @property
    def anonymous(self) -> bool:
        """Nothing was presented and nothing is to be set: no header, no cookie to change."""
        return (
            self.identity is None
            and self.cookie is CookieState.ABSENT
            and self.basic is BasicState.ABSENT
            and self.bearer is TokenState.ABSENT
            and self.remember is RememberState.ABSENT
            and not self.cookies
        )

    @property
    def stale_cookie(self) -> bool:
        """A login cookie was presented that logs no one in: a session cookie that maps to no
        live session (rule 1's trigger), or a remember-me cookie that is unknown, expired,
        revoked or replayed. Either way the client believes it is logged in."""
        return self.cookie.stale or self.remember in (
            RememberState.INVALID, RememberState.THEFT, RememberState.REUSED)
