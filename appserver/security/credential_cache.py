"""Credentials verified recently, so HTTP Basic does not pay an argon2 hash per request.

An entry is an HMAC, keyed with the application secret, of the user id, the stored password
hash and the presented password: never the password itself, and nothing that helps to guess
it without the secret. Because the stored hash is part of the key, the one SELECT that loads
the user decides: a password change (new hash), in any process, misses at once; deactivation
and lock-outs are read from the same row on every request. Only right passwords are added.
The trade-off: a copy of a process's memory holds HMACs of live passwords, which an attacker
who also has the secret could test guesses against at HMAC speed (not argon2 speed).
"""
from __future__ import annotations

import hashlib
import hmac
import threading
from collections import OrderedDict


class CredentialCache:
    """A bounded, thread-safe LRU set of verified-credential HMACs."""

    def __init__(self, secret: str, max_entries: int) -> None:
        self._key = hashlib.sha256(b"credential-cache:" + secret.encode("utf-8")).digest()
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def _mac(self, user_id: int, stored_hash: str, password: str) -> bytes:
        message = b"\0".join(
            [str(user_id).encode("ascii"), stored_hash.encode("utf-8"), password.encode("utf-8", "surrogatepass")]
        )
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def contains(self, user_id: int, stored_hash: str, password: str) -> bool:
        if self.max_entries == 0:
            return False
        mac = self._mac(user_id, stored_hash, password)
        with self._lock:
            if mac not in self._entries:
                return False
            self._entries.move_to_end(mac)
            return True

    def add(self, user_id: int, stored_hash: str, password: str) -> None:
        if self.max_entries == 0:
            return
        mac = self._mac(user_id, stored_hash, password)
        with self._lock:
            self._entries[mac] = None
            self._entries.move_to_end(mac)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
