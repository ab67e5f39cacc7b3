"""Personal access tokens (Jira's PATs, sent as ``Authorization: Bearer``): make, look up,
list and revoke them.

A raw token is ``apt_<id>_<secret>``: the row's id, so the lookup is one primary-key SELECT
(joined with the user), and 256 random bits from :mod:`secrets`. The database keeps only the
SHA-256 of the secret, compared with :func:`hmac.compare_digest`. A fast hash is right here
and would be wrong for passwords: a password is guessable, so its hash must make each guess
expensive (argon2); a 256-bit random secret cannot be guessed, so one SHA-256 is as safe as
any adaptive hash and costs nothing per request. ``docs/tokens-and-websudo.md`` says more.
"""
from __future__ import annotations

import enum
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from pyramid.httpexceptions import HTTPForbidden
from pyramid.request import Request
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ..models import PersonalToken, User
from ..models.prepared import PreparedRead
from ..models.rows import OwnedRowLoader
from ..models.units import read_bind, unit
from . import audit
from .audit import Event
from .characters import has_bidi_controls, has_control_characters, looks_blank
from .sessions import acting_session_ended
from .tokens import hash_token, new_token

PREFIX = "apt_"
_RAW_TOKEN = re.compile(r"apt_([1-9][0-9]{0,9})_([A-Za-z0-9_-]{43})")
_MAX_ID = 2**31 - 1  # INTEGER on every backend: a larger id can only be garbage


class TokenState(enum.Enum):
    """What became of the Bearer token a request presented."""

    ABSENT = "absent"
    VALID = "valid"
    MALFORMED = "malformed"
    UNKNOWN = "unknown"  # no such token, or the secret does not match
    EXPIRED = "expired"
    REVOKED = "revoked"
    INACTIVE = "inactive"  # the owner's account is deactivated

    @property
    def failed(self) -> bool:
        """Presented but not usable: a 401 everywhere, never anonymous."""
        return self not in (TokenState.ABSENT, TokenState.VALID)


@dataclass(frozen=True)
class TokenLookup:
    state: TokenState
    token: PersonalToken | None = None
    user: User | None = None
    #: Valid, and last used a touch interval ago or more (or never): :meth:`TokenStore.touch` it.
    due_touch: bool = False


@dataclass(frozen=True)
class IssuedToken:
    raw: str  # shown once, never stored
    token: PersonalToken


def bearer_credentials(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header ("" when it has none); None when the
    header is absent or uses another scheme."""
    if header is None:
        return None
    scheme, _, param = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return param.strip()


def bearer_challenge(realm: str, description: str) -> str:
    """RFC 6750's challenge for a token that cannot be used."""
    realm = realm.replace("\\", "").replace('"', "")
    description = description.replace("\\", "").replace('"', "")
    return f'Bearer realm="{realm}", error="invalid_token", error_description="{description}"'


def parse(raw: str) -> tuple[int, str] | None:
    match = _RAW_TOKEN.fullmatch(raw)
    if match is None or int(match.group(1)) > _MAX_ID:
        return None
    return int(match.group(1)), match.group(2)


_TOKEN_ROWS = OwnedRowLoader(PersonalToken, "t_")
#: The token and its owner, by the token's id: one primary-key SELECT, run by the driver on
#: a live engine (appserver.models.prepared).
_LOOKUP = PreparedRead(
    select(*_TOKEN_ROWS.columns)
    .join_from(PersonalToken, User, PersonalToken.user_id == User.id)
    .where(PersonalToken.id == bindparam("token_id"))
)


class TokenStore:
    def __init__(
        self, dbsession: Session | Engine | Connection, now: datetime, *, touch_interval: int
    ) -> None:
        self.db = dbsession
        self.now = now
        self.touch_interval = timedelta(seconds=touch_interval)

    @classmethod
    def reader(cls, request: Request) -> TokenStore:
        """A store for :meth:`lookup` alone: no Session and no transaction for its SELECT."""
        return cls.of(request, read_bind(request))

    @classmethod
    def of(cls, request: Request, db: Session | Engine | Connection | None = None) -> TokenStore:
        """The store in ``db`` (a unit of work), or in the request's own by default."""
        return cls(
            request.dbsession if db is None else db,
            request.now,
            touch_interval=request.appserver_settings.touch_interval,
        )

    def issue(self, user: User, name: str, expires_at: datetime | None) -> IssuedToken:
        secret = new_token()
        row = PersonalToken(
            user_id=user.id,
            name=name,
            secret_hash=hash_token(secret),
            created_at=self.now,
            expires_at=expires_at,
        )
        self.db.add(row)
        self.db.flush()  # the id is part of the raw token
        return IssuedToken(f"{PREFIX}{row.id}_{secret}", row)

    def lookup(self, raw: str) -> TokenLookup:
        """One SELECT (token joined with its owner); it writes nothing."""
        parsed = parse(raw)
        if parsed is None:
            return TokenLookup(TokenState.MALFORMED)
        token_id, secret = parsed
        found = _LOOKUP.first(self.db, {"token_id": token_id})
        if found is None:
            return TokenLookup(TokenState.UNKNOWN)
        token, user = _TOKEN_ROWS.load(found)
        if not hmac.compare_digest(hash_token(secret), token.secret_hash):
            return TokenLookup(TokenState.UNKNOWN, None, user)  # the owner, for the audit
        if token.revoked_at is not None:
            return TokenLookup(TokenState.REVOKED, token, user)
        if token.expires_at is not None and self.now >= token.expires_at:
            return TokenLookup(TokenState.EXPIRED, token, user)
        if not user.active:
            return TokenLookup(TokenState.INACTIVE, token, user)
        due = token.last_accessed_at is None or self.now - token.last_accessed_at >= self.touch_interval
        return TokenLookup(TokenState.VALID, token, user, due_touch=due)

    def touch(self, token: PersonalToken) -> bool:
        """Note the token as used now (``lastAccessedAt``); False if it was revoked meanwhile.
        The WHERE clause stops a request in flight from using a token revoked meanwhile."""
        result = self.db.execute(
            update(PersonalToken)
            .where(PersonalToken.id == token.id, PersonalToken.revoked_at.is_(None))
            .values(last_accessed_at=self.now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            return False
        set_committed_value(token, "last_accessed_at", self.now)  # no SELECT to reload it
        return True

    def get(self, token_id: int) -> PersonalToken | None:
        """A token that has not been revoked (expired ones included: they are listed)."""
        token = self.db.get(PersonalToken, token_id)
        return token if token is not None and token.revoked_at is None else None

    def listed(self, user_id: int) -> list[PersonalToken]:
        """The user's tokens that have not been revoked, newest first (expired ones too)."""
        return list(
            self.db.scalars(
                select(PersonalToken)
                .where(PersonalToken.user_id == user_id, PersonalToken.revoked_at.is_(None))
                .order_by(PersonalToken.created_at.desc(), PersonalToken.id.desc())
            )
        )

    def newest_id(self, user_id: int) -> int:
        """The id of the user's latest token, whatever its state (0 for none)."""
        newest = select(func.max(PersonalToken.id)).where(PersonalToken.user_id == user_id)
        return self.db.scalar(newest) or 0

    def named_since(self, user_id: int, name: str, after_id: int) -> bool:
        """Whether the user has a token called ``name`` made after token ``after_id``."""
        return self.db.scalar(
            select(PersonalToken.id)
            .where(PersonalToken.user_id == user_id, PersonalToken.name == name, PersonalToken.id > after_id)
            .limit(1)
        ) is not None

    def _usable(self):
        return PersonalToken.revoked_at.is_(None) & (
            PersonalToken.expires_at.is_(None) | (PersonalToken.expires_at > self.now)
        )

    def lock_owner(self, user_id: int) -> bool:
        """Lock the account's row (PostgreSQL; SQLite's writing transaction holds the whole
        database already) until this transaction ends, so that creations of tokens for one
        user take turns: without it, parallel creations all counted the tokens before any
        was added, and all found room under the limit. The account's row comes first in the
        one lock order (docs/concurrency.md). ``FOR NO KEY UPDATE``: a login adding a session
        for the account (a foreign-key check) does not wait for it. Returns whether the
        account is active, as the locked row says: a deactivation that committed meanwhile."""
        # Read to the end, as every query here is: a result left open keeps its statement,
        # and on SQLite the pooled connection's snapshot, alive for as long as anything holds
        # it (the debug toolbar keeps the results of its last requests).
        return bool(self.db.scalar(select(User.active).where(User.id == user_id).with_for_update(key_share=True)))

    def locked_owner(self, user_id: int) -> tuple[bool, str | None]:
        """:meth:`lock_owner`, also reading the account's password hash as the locked row
        holds it: a password change that committed meanwhile shows here (a token's creation)."""
        row = self.db.execute(
            select(User.active, User.password_hash).where(User.id == user_id).with_for_update(key_share=True)
        ).first()
        return (bool(row.active), row.password_hash) if row is not None else (False, None)

    def usable_count(self, user_id: int) -> int:
        return self.db.scalar(
            select(func.count()).select_from(PersonalToken).where(
                PersonalToken.user_id == user_id, self._usable()
            )
        ) or 0

    def usable_counts(self) -> dict[int, int]:
        """user id -> number of usable tokens, for the admin users page (one query)."""
        rows = self.db.execute(
            select(PersonalToken.user_id, func.count())
            .where(self._usable())
            .group_by(PersonalToken.user_id)
        )
        return {user_id: count for user_id, count in rows}

    def revoke(self, token: PersonalToken) -> bool:
        """True when this call revoked it; False when it was revoked already (by a parallel
        request, too: the UPDATE waits for it and then matches nothing)."""
        revoked = self.db.execute(
            update(PersonalToken)
            .where(PersonalToken.id == token.id, PersonalToken.revoked_at.is_(None))
            .values(revoked_at=self.now)
            .execution_options(synchronize_session=False)
        ).rowcount > 0
        set_committed_value(token, "revoked_at", token.revoked_at or self.now)
        return revoked

    def revoke_user(self, user_id: int) -> int:
        return self.db.execute(
            update(PersonalToken)
            .where(PersonalToken.user_id == user_id, PersonalToken.revoked_at.is_(None))
            .values(revoked_at=self.now)
            .execution_options(synchronize_session=False)
        ).rowcount

    def purge_batch(self, batch_size: int = 1000) -> int:
        """Delete up to ``batch_size`` revoked or expired tokens (a presented one is then just
        unknown: still a 401). Usable tokens are never touched."""
        dead = PersonalToken.revoked_at.is_not(None) | (
            PersonalToken.expires_at.is_not(None) & (PersonalToken.expires_at <= self.now)
        )
        ids = list(self.db.scalars(select(PersonalToken.id).where(dead).limit(batch_size)))
        if ids:
            self.db.execute(delete(PersonalToken).where(PersonalToken.id.in_(ids)))
        return len(ids)


# --- making and revoking, with the limits and the audit trail -------------------------------


class TokenRequestError(ValueError):
    """A token that may not be made as asked; ``field`` names the REST field it is about."""

    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class MintedByToken(TokenRequestError):
    """A request authenticated by a token asked for another (403, on every channel)."""

    status = 403


class SentAlready(TokenRequestError):
    """The account page's form, sent again (a reload, a double click): its token exists."""

    status = 409


def validate(request: Request, user: User, name: object, days: object) -> tuple[str, int | None]:
    """Jira's rules (``RestValidator``), with the limits from the settings."""
    settings = request.appserver_settings
    if name is not None and not isinstance(name, str):
        raise TokenRequestError("The token name must be a string.", "name")
    if not name or looks_blank(name):  # spaces, or characters drawn as nothing
        raise TokenRequestError("Give the token a name.", "name")
    name = name.strip()
    if len(name) > settings.token_name_max_length:
        raise TokenRequestError(
            f"The token name must be at most {settings.token_name_max_length} characters.", "name"
        )
    if has_control_characters(name):
        raise TokenRequestError("The token name cannot contain control characters.", "name")
    if has_bidi_controls(name):  # it would reorder the account and admin pages around the name
        raise TokenRequestError("The token name cannot contain bidirectional override or isolate characters "
                                "(U+202A to U+202E, U+2066 to U+2069).", "name")
    if days is None:
        if not settings.tokens_without_expiry:
            raise TokenRequestError(
                "Tokens without an expiry date are not allowed here: give the number of days "
                f"until the token expires (1 to {settings.token_max_expiry_days}).",
                "expirationDuration",
            )
    elif isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= settings.token_max_expiry_days:
        raise TokenRequestError(
            f"The expiry must be a whole number of days from 1 to {settings.token_max_expiry_days}.",
            "expirationDuration",
        )
    active, password_hash = request.token_store.locked_owner(user.id)
    if not active:
        # Deactivated while this request ran (a Basic client's, say): no new token, which
        # would come back to life with the account's reactivation.
        raise TokenRequestError("This account is deactivated: no token can be made for it.")
    if acting_session_ended(request):
        # Logged out everywhere while this request ran: that revoked the tokens there were,
        # and the session asking for one more is gone. With the identity refused, the
        # forbidden view answers as for anyone not logged in: a 401 under /rest, the login
        # page elsewhere, as for any revoked session.
        request.registry.security_policy.refuse(request)
        raise HTTPForbidden()
    identity = request.authentication.identity
    if identity is not None and identity.basic and password_hash != identity.user.password_hash:
        # The password this Basic request was checked with was changed while it ran: the old
        # password must not mint a credential that outlives the change (an outside review).
        # Answered as the old password is answered from now on: a 401.
        request.registry.security_policy.refuse(request)
        raise HTTPForbidden()
    if request.token_store.usable_count(user.id) >= settings.tokens_per_user:
        raise TokenRequestError(
            f"You already have {settings.tokens_per_user} tokens, the most allowed: revoke one first."
        )
    return name, days


def create(
    request: Request, user: User, name: object, days: object, *, by: str = "", sent_after: int | None = None
) -> IssuedToken:
    """Validate and make a token for ``user``; the raw value is the caller's to show once.

    Never for a request that came with a token, whichever page or resource it asked: a
    leaked token must not outlive its own expiry or revocation through a new one.

    ``sent_after``: the user's newest token id when the form was shown. A token of the same
    name made since is this very form sent again (a reload re-posts it; so does a double
    click): refused, not made twice. Decided under the account's row lock (``validate``), so
    parallel copies of one form make one token."""
    identity = request.authentication.identity
    if identity is not None and identity.token is not None:
        raise MintedByToken("A personal access token cannot create tokens: log in with your password.")
    name, days = validate(request, user, name, days)
    if sent_after is not None and request.token_store.named_since(user.id, name, sent_after):
        raise SentAlready(
            f"This form was sent already: the token “{name}” was made then, and its value was "
            "shown once. If you did not copy it, revoke it and create another.", "name"
        )
    expires_at = request.now + timedelta(days=days) if days is not None else None
    issued = request.token_store.issue(user, name, expires_at)
    expiry = f"expires {expires_at:%Y-%m-%d}" if expires_at else "no expiry"
    audit.record(request, Event.TOKEN_CREATED, user, f"{name!r}, {expiry}{', by ' + by if by else ''}")
    return issued


def revoke(request: Request, token: PersonalToken, owner: User, *, by: str = "") -> bool:
    """Revoke and audit once: parallel revocations of one token leave one event."""
    if not request.token_store.revoke(token):
        return False
    audit.record(request, Event.TOKEN_REVOKED, owner, f"{token.name!r}{', by ' + by if by else ''}")
    return True


def revoke_all(request: Request, user: User, *, by: str = "") -> int:
    """Revoke every token of ``user`` (the admin page, the command line). The account's row
    first, as every revocation: a creation takes it too, so it either committed before
    (its token is revoked here) or waits and comes after. Without it, on PostgreSQL an
    UPDATE waiting for one token's row (a touch) kept its older snapshot and missed a token
    created and acknowledged meanwhile (an outside review)."""
    request.token_store.lock_owner(user.id)
    revoked = request.token_store.revoke_user(user.id)
    if revoked:
        audit.record(request, Event.TOKEN_REVOKED, user, f"all {revoked} token(s){', by ' + by if by else ''}")
    return revoked


def record_refusal(request: Request, state: TokenState, lookup: TokenLookup) -> None:
    """Audit a refused token, collapsed like every event a client can repeat at will: a
    script retrying a revoked token in a loop leaves one row per window with its repeats
    counted. In a unit of its own: the refusal stands whatever the request does next."""
    detail = state.value if lookup.token is None else f"{lookup.token.name!r}: {state.value}"
    with unit(request, write=True) as db:
        audit.record(request, Event.TOKEN_REFUSED, lookup.user, detail, db=db)
