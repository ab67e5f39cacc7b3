"""A bounded in-process cache of verified HTTP Basic credentials: Basic without argon2 on
every request.

An entry is ``HMAC(key derived from the app secret, user id + stored password hash +
presented password)`` and nothing else: never the password, never the hash. The user's row
is loaded on every request anyway (the one SELECT), so the stored hash and the account's
state are always current: a password change makes a new hash and so a different key,
deactivation and lock-out are checked before and after the password as before, in every
process, with no invalidation message. Only a verification that succeeded is cached; a
wrong password is hashed and counted towards the lock-out every time.

The trade-off: a copy of the process memory holds HMACs of recently used passwords, not the
passwords; testing a guess against one needs the app secret (which such a copy may also
hold) and costs a SHA-256 instead of an argon2 hash. ``appserver.basic.credential_cache_size
= 0`` turns the cache off.
"""
from __future__ import annotations

import hashlib
import hmac
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from pyramid.request import Request

from ..models import User
from .passwords import PasswordService


class CredentialCache:
    """Least recently used HMACs of verified credentials, at most ``max_entries``."""

    def __init__(self, secret: str, max_entries: int = 1024) -> None:
        # A key of its own: the app secret signs other things, never these HMACs directly.
        self._key = hmac.new(secret.encode("utf-8"), b"appserver basic credential cache", hashlib.sha256).digest()
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def key(self, user_id: int, password_hash: str, password: str) -> bytes:
        # Unambiguous: the id is digits, a stored hash holds no NUL, the password comes last.
        message = f"{user_id}\x00{password_hash}\x00".encode() + password.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def __len__(self) -> int:
        return len(self._entries)

    def contains(self, key: bytes) -> bool:
        with self._lock:
            if key not in self._entries:
                return False
            self._entries.move_to_end(key)
            return True

    def add(self, key: bytes) -> None:
        if self.max_entries == 0:
            return
        with self._lock:
            self._entries[key] = None
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


class CachedVerification:
    """The password service as the lock-out logic sees it while one user's Basic
    credentials are checked: ``verify`` answers from the cache when it can."""

    def __init__(self, service: PasswordService, cache: CredentialCache, user_id: int) -> None:
        self._service = service
        self._cache = cache
        self._user_id = user_id

    def __getattr__(self, name: str):
        return getattr(self._service, name)

    def verify(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        if self._service.too_long(password):
            return self._service.verify(password, password_hash)
        key = self._cache.key(self._user_id, password_hash, password)
        if self._cache.contains(key):
            return True, None
        ok, new_hash = self._service.verify(password, password_hash)
        if ok and new_hash is None:  # an upgraded hash changes the key: cache the next one
            self._cache.add(key)
        return ok, new_hash


@contextmanager
def cached_verification(request: Request, user: User) -> Iterator[None]:
    """Let ``request.passwords.verify`` use the cache for ``user`` within the block, so the
    lock-out logic (which calls it) stays the one place that decides."""
    service = request.passwords
    request.passwords = CachedVerification(service, request.registry.credential_cache, user.id)
    try:
        yield
    finally:
        request.passwords = service
