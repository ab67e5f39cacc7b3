"""HTTP Basic without argon2 on every request: the credential cache
(appserver/security/credential_cache.py). A hit skips the hash and nothing else: password
changes, deactivation and lock-out act on the very next request; wrong passwords are never
cached and always counted."""
from __future__ import annotations

import base64

import pytest

from appserver.security import accounts
from appserver.security.credential_cache import CredentialCache

MYSELF = "/rest/api/2/myself"


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


@pytest.fixture
def hashes(app):
    service = app.registry.passwords
    start = service.hash_count
    return lambda: service.hash_count - start


def test_a_cached_credential_costs_no_hash(testapp, users, hashes):
    testapp.get(MYSELF, headers=basic("fred", "fred-password"))
    assert hashes() == 1
    for _ in range(5):
        assert testapp.get(MYSELF, headers=basic("fred", "fred-password")).json["name"] == "fred"
    assert hashes() == 1


def test_without_the_cache_every_request_hashes(make_app, users):
    uncached = make_app(**{"appserver.basic.credential_cache_size": "0"})
    service = uncached.app.registry.passwords
    start = service.hash_count
    for _ in range(3):
        uncached.get(MYSELF, headers=basic("fred", "fred-password"))
    assert service.hash_count - start == 3


def test_a_wrong_password_is_never_served_from_the_cache_and_always_counts(testapp, users, hashes, dbsession):
    testapp.get(MYSELF, headers=basic("fred", "fred-password"))  # cached
    testapp.get(MYSELF, headers=basic("fred", "wrong"), status=401)
    testapp.get(MYSELF, headers=basic("fred", "wrong"), status=401)
    assert hashes() == 3
    dbsession.refresh(users["fred"])
    assert users["fred"].current_failed_logins == 2
    # Below the limit the cached right password still works, and resets the count.
    testapp.get(MYSELF, headers=basic("fred", "fred-password"), status=200)
    dbsession.refresh(users["fred"])
    assert users["fred"].current_failed_logins == 0


def test_a_password_change_takes_effect_on_the_next_request(testapp, users, app_request, dbsession):
    testapp.get(MYSELF, headers=basic("fred", "fred-password"))  # cached
    accounts.set_password(app_request, users["fred"], "a-new-password-123")
    dbsession.flush()
    testapp.get(MYSELF, headers=basic("fred", "fred-password"), status=401)
    testapp.get(MYSELF, headers=basic("fred", "a-new-password-123"), status=200)


def test_deactivation_takes_effect_on_the_next_request(testapp, users, dbsession):
    testapp.get(MYSELF, headers=basic("fred", "fred-password"))  # cached
    users["fred"].active = False
    dbsession.flush()
    refused = testapp.get(MYSELF, headers=basic("fred", "fred-password"), status=401)
    assert refused.headers["X-Seraph-LoginReason"] == "AUTHENTICATED_FAILED"


def test_a_deactivated_accounts_password_is_hashed_and_counted_like_a_wrong_one(testapp, users, dbsession, hashes):
    """Cached while the account was active, the right password of a deactivated account
    costs a hash and a failure, as any wrong one: neither time nor the lock-out tells it."""
    testapp.get(MYSELF, headers=basic("fred", "fred-password"))  # cached
    users["fred"].active = False
    dbsession.flush()
    for _ in range(2):
        testapp.get(MYSELF, headers=basic("fred", "fred-password"), status=401)
    assert hashes() == 3
    dbsession.refresh(users["fred"])
    assert users["fred"].current_failed_logins == 2


def test_a_lock_out_takes_effect_on_the_next_request(testapp, users, hashes):
    testapp.get(MYSELF, headers=basic("fred", "fred-password"))  # cached
    for _ in range(3):
        testapp.get(MYSELF, headers=basic("fred", "wrong"), status=401)
    before = hashes()
    denied = testapp.get(MYSELF, headers=basic("fred", "fred-password"), status=403)
    assert denied.headers["X-Seraph-LoginReason"] == "AUTHENTICATION_DENIED"
    assert hashes() == before


def test_the_cache_is_bounded_and_forgets_the_least_recently_used():
    cache = CredentialCache("s" * 32, max_entries=2)
    first, second, third = (cache.key(n, "$argon2id$x", "pw") for n in (1, 2, 3))
    cache.add(first)
    cache.add(second)
    assert cache.contains(first)  # now the most recently used
    cache.add(third)
    assert len(cache) == 2
    assert cache.contains(first) and cache.contains(third) and not cache.contains(second)


def test_an_entry_is_an_hmac_of_id_hash_and_password_never_the_password():
    cache = CredentialCache("s" * 32)
    key = cache.key(7, "$argon2id$stored", "hunter2-password")
    assert len(key) == 32 and b"hunter2" not in key
    assert key != cache.key(8, "$argon2id$stored", "hunter2-password")
    assert key != cache.key(7, "$argon2id$other", "hunter2-password")
    assert key != cache.key(7, "$argon2id$stored", "hunter3-password")
    assert key != CredentialCache("t" * 32).key(7, "$argon2id$stored", "hunter2-password")
