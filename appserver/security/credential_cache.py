"""A bounded in-process cache of verified credentials: HTTP Basic without argon2 on every
request (PasswordService.verified_before, used by the lock-out logic in login.py).

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
