"""Production's password hash: argon2id at OWASP's minimum (19 MiB, two passes, one lane).
The suite's other apps hash with a cheaper context (tests/support.py CHEAP_PASSWORDS)."""
from __future__ import annotations

import appserver
from appserver.security.passwords import PasswordService

from .support import CHEAP_PASSWORDS, base_settings


def test_production_hashes_are_argon2id_at_owasp_s_minimum():
    stored = PasswordService().hash("correct horse battery staple")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_an_app_hashes_with_production_s_parameters_unless_code_hands_it_another_context(tmp_path):
    settings = base_settings(f"sqlite:///{tmp_path / 'unused.sqlite'}")
    production = appserver.main({}, **settings).registry.passwords
    assert production.hash("a-password-1").startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    cheap = appserver.main({}, **settings, **{"appserver.password_context": CHEAP_PASSWORDS}).registry.passwords
    assert cheap.hash("a-password-1").startswith("$argon2id$v=19$m=64,t=1,p=1$")


def test_a_cheap_hash_still_verifies_and_a_production_one_is_rehashed_on_login():
    service = PasswordService(context=CHEAP_PASSWORDS)
    ok, new_hash = service.verify("a-password-1", PasswordService().hash("a-password-1"))
    assert ok and new_hash is not None and new_hash.startswith("$argon2id$v=19$m=64,")
