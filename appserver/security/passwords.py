"""The password service: the only code that hashes or verifies a password.

argon2id by default (OWASP's minimum: 19 MiB, t=2, p=1); older schemes verify and are
upgraded on the next successful login. Hashing is CPU- and memory-bound, so at most
``appserver.password.max_concurrent_hashes`` run at once per process.
"""
from __future__ import annotations

import threading

from passlib.context import CryptContext
from pyramid.config import Configurator
from pyramid.request import Request

from .allocator import unmap_large_blocks
from .credential_cache import CredentialCache


class PasswordTooLong(ValueError):
    pass


def make_context(*, memory_kib: int = 19 * 1024, time_cost: int = 2) -> CryptContext:
    """Production's argon2id by default. The test suite injects a cheaper one
    (``appserver.password_context``), as Django's documentation advises for its own."""
    return CryptContext(
        schemes=["argon2", "pbkdf2_sha256"],
        default="argon2",
        deprecated="auto",
        argon2__type="ID",
        argon2__memory_cost=memory_kib,
        argon2__time_cost=time_cost,
        argon2__parallelism=1,
    )


class PasswordService:
    def __init__(
        self,
        max_bytes: int = 1024,
        max_concurrent: int = 4,
        cache: CredentialCache | None = None,
        context: CryptContext | None = None,
    ) -> None:
        self.context = context or make_context()
        self.max_bytes = max_bytes
        #: Right passwords verified recently (see credential_cache): None disables it.
        self.cache = cache
        self._slots = threading.BoundedSemaphore(max_concurrent)
        #: How many hash computations ran (verifications, dummies and new hashes): tests use it
        #: to prove that a locked account's password is not even checked.
        self.hash_count = 0
        self._count_lock = threading.Lock()

    def _counted(self) -> None:
        with self._count_lock:  # threads of one process hash at once
            self.hash_count += 1

    def too_long(self, password: str) -> bool:
        return len(password.encode("utf-8", "surrogatepass")) > self.max_bytes

    def hash(self, password: str) -> str:
        if self.too_long(password):
            raise PasswordTooLong(f"passwords are limited to {self.max_bytes} bytes")
        with self._slots:
            self._counted()
            return self.context.hash(password)

    def verify(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        """Check ``password``; the second item is a replacement hash when the scheme is old."""
        if self.too_long(password):
            self.dummy_verify()
            return False, None
        with self._slots:
            self._counted()
            try:
                return self.context.verify_and_update(password, password_hash)
            except (ValueError, TypeError):
                # An unparseable stored hash never logs anybody in.
                return False, None

    def verified_before(self, user_id: int, password_hash: str, password: str) -> bool:
        """True when this password was verified against this very stored hash lately: it is
        right, and no hash needs to run (nor a lock-out reservation: nothing is guessed)."""
        return self.cache is not None and self.cache.contains(self.cache.key(user_id, password_hash, password))

    def note_verified(self, user_id: int, password_hash: str, password: str) -> None:
        if self.cache is not None:
            self.cache.add(self.cache.key(user_id, password_hash, password))

    def dummy_verify(self) -> None:
        """Spend the time of one verification, so unknown usernames cost what known ones do."""
        with self._slots:
            self._counted()
            self.context.dummy_verify()


def includeme(config: Configurator) -> None:
    settings = config.registry.appserver_settings
    unmap_large_blocks()  # the hash limit bounds memory too, not only CPU
    cache = CredentialCache(settings.secret, settings.credential_cache_size)
    context = config.get_settings().get("appserver.password_context")  # tests only
    service = PasswordService(
        settings.max_password_bytes, settings.max_concurrent_hashes, cache, context
    )
    config.registry.passwords = service

    def passwords(request: Request) -> PasswordService:
        return request.registry.passwords

    config.add_request_method(passwords, reify=True)
