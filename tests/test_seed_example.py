"""The seed's own example, with its numbers, over a real waitress server and plain HTTP:

    An issue tracker holds 200 issues of which 5 are visible to anonymous users. A REST
    client logged in with a cookie searches and gets 200. Its session expires. Without rule 1
    its next search silently returns 5. With rule 1 it gets 401, logs in again, and gets 200.
"""
from __future__ import annotations

import pytest
import requests

from appserver.security.login import find_user

IDLE_TIMEOUT = 600
MAX_AGE = 1500
SETTINGS = {
    "appserver.session.idle_timeout": str(IDLE_TIMEOUT),
    "appserver.session.max_age": str(MAX_AGE),
    "appserver.session.touch_interval": "60",
}
CREDENTIALS = {"username": "fred", "password": "fred-password"}


@pytest.fixture(scope="module")
def server(live_server_factory):
    return live_server_factory(**SETTINGS)


@pytest.fixture(scope="module")
def server_without_rule_1(live_server_factory):
    """The same application with rule 1 switched off: the failure the seed warns about."""
    return live_server_factory(**SETTINGS, **{"appserver.rest_cookie_rule": "false"})


def total(response: requests.Response) -> int:
    assert response.status_code == 200, response.text
    return response.json()["total"]


def end_session(server, how: str, client: requests.Session) -> None:
    search = server.url + "/rest/api/2/search"
    if how == "idle timeout":
        server.clock.advance(IDLE_TIMEOUT + 1)
    elif how == "absolute lifetime":
        # stay active (each request refreshes the idle timer) until the lifetime is over
        for _ in range((MAX_AGE - 1) // (IDLE_TIMEOUT - 100)):
            server.clock.advance(IDLE_TIMEOUT - 100)
            assert total(client.get(search, params={"jql": "project = DEMO"})) == 200
        server.clock.advance(IDLE_TIMEOUT - 100)
    elif how == "revoked by an administrator":
        with server.request() as request:
            request.session_store.revoke_user_sessions(find_user(request, "fred").id)
    else:  # logged out elsewhere with the same cookie
        copy = requests.Session()
        copy.cookies.update(client.cookies)
        assert copy.delete(server.url + "/rest/auth/1/session").status_code == 204


@pytest.mark.parametrize(
    "how", ["idle timeout", "absolute lifetime", "revoked by an administrator", "logged out"]
)
def test_the_seeds_example(server, how):
    search = server.url + "/rest/api/2/search"
    query = {"jql": "project = DEMO"}

    # anonymous: the 5 public issues
    assert total(requests.get(search, params=query)) == 5

    # a cookie-authenticated client: all 200
    client = requests.Session()
    login = client.post(server.url + "/rest/auth/1/session", json=CREDENTIALS)
    assert login.status_code == 200
    assert total(client.get(search, params=query)) == 200

    # the session ends: the next search is a 401 that says so, not 5 issues
    end_session(server, how, client)
    expired = client.get(search, params=query)
    assert expired.status_code == 401
    assert "total" not in expired.json() and "session has expired" in expired.json()["errorMessages"][0]
    assert expired.headers["WWW-Authenticate"]
    # The stale cookie is kept, so the client goes on being refused until it logs in again:
    # deleted, its next search would go without it and get the 5 public issues.
    assert "appserver.session" in client.cookies
    assert client.get(search, params=query).status_code == 401

    # log in again: 200 issues again
    assert client.post(server.url + "/rest/auth/1/session", json=CREDENTIALS).status_code == 200
    assert total(client.get(search, params=query)) == 200


def test_without_rule_1_the_expired_client_silently_gets_5(server_without_rule_1):
    """Why rule 1 exists: switched off, the expired session is served as anonymous."""
    server = server_without_rule_1
    search = server.url + "/rest/api/2/search"
    client = requests.Session()
    assert client.post(server.url + "/rest/auth/1/session", json=CREDENTIALS).status_code == 200
    assert total(client.get(search, params={"jql": "project = DEMO"})) == 200
    server.clock.advance(IDLE_TIMEOUT + 1)
    assert total(client.get(search, params={"jql": "project = DEMO"})) == 5
