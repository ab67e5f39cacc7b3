"""No acknowledged write is lost (issue 9, item 1), on real servers that really commit.

A table: every state-changing action x every kind of write that authentication can make
first, in the same request (a failure count reset, a hash upgrade, a session touch, a
remember-me rotation, a session re-issued from remember-me). After the action's success
answer, both the action's write and authentication's write are in the database.

HTML forms need the session-bound CSRF token of the page they came from, so a request that
re-issues its session (remember-me) cannot submit one: those two columns run with the REST
actions, and the HTML ones with a session touch and, over Basic, with a failure reset and a
hash upgrade.
"""
from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import requests
from passlib.hash import pbkdf2_sha256
from sqlalchemy import select, update

from appserver.models import RememberToken, User, UserSession
from appserver.security.tokens import hash_token

from .support import create_user

PASSWORD = "first-password-1"
NEW_PASSWORD = "second-password-2"
TOUCH_INTERVAL = 60
IDLE_TIMEOUT = 1800
_names = itertools.count(1)


@pytest.fixture(scope="module")
def live(live_server_factory):
    return live_server_factory()


@dataclass
class Case:
    """One client of one user, with what the action needs to check afterwards."""

    live: object
    username: str
    http: requests.Session = field(default_factory=requests.Session)
    basic: bool = False
    #: The action's request gets its session from remember-me (its cookie is gone or stale).
    reissues: bool = False
    #: Checks that the authentication write of the request really happened.
    auth_checks: list[Callable[[], None]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.live.url + path

    def headers(self) -> dict[str, str]:
        if not self.basic:
            return {}
        token = base64.b64encode(f"{self.username}:{PASSWORD}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.url(path), headers=self.headers(), allow_redirects=False)

    def csrf(self, path: str) -> str:
        page = self.get(path)
        assert page.status_code == 200, page.text
        return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)

    def post(self, path: str, data: dict, *, form_page: str) -> requests.Response:
        data = {**data, "csrf_token": self.csrf(form_page)}
        return self._after_setup(lambda: self.http.post(self.url(path), data=data, headers=self.headers(), allow_redirects=False))

    def rest(self, method: str, path: str, **kw) -> requests.Response:
        return self._after_setup(lambda: self.http.request(method, self.url(path), headers=self.headers(), **kw))

    #: The authentication write to arrange right before the action's request.
    arrange: Callable[[], None] = lambda: None

    def _after_setup(self, send: Callable[[], requests.Response]) -> requests.Response:
        self.arrange()
        return send()


def db(case: Case):
    return case.live.request()


def user_row(case: Case, username: str | None = None) -> User:
    with db(case) as request:
        return request.dbsession.scalar(select(User).where(User.username == (username or case.username)))


def new_user(live, **kw) -> str:
    username = f"tx{next(_names)}"
    with live.request() as request:
        create_user(request, username, PASSWORD, **kw)
    return username


def rest_login(case: Case, *, remember: bool = False) -> None:
    response = case.http.post(
        case.url("/rest/auth/1/session"),
        json={"username": case.username, "password": PASSWORD, "os_cookie": str(remember).lower()},
    )
    assert response.status_code == 200, response.text


# --- the writes authentication makes first --------------------------------------------------


def touch(case: Case) -> None:
    rest_login(case)
    presented: list[str] = []

    def arrange() -> None:
        # The cookie the action presents: a WebSudo confirmation before it rotated the login's.
        presented.append(case.http.cookies["appserver.session"])
        case.live.clock.advance(TOUCH_INTERVAL + 1)  # the action's request is due to touch
    case.arrange = arrange

    def check() -> None:
        with db(case) as request:
            row = request.dbsession.scalar(
                select(UserSession).where(UserSession.token_hash == hash_token(presented[0])))
            assert row.last_seen_at == case.live.clock.now(), "the session touch was lost"
    case.auth_checks.append(check)


def _remember_used(case: Case) -> None:
    with db(case) as request:
        user = request.dbsession.scalar(select(User).where(User.username == case.username))
        rotated = request.dbsession.scalars(
            select(RememberToken).where(RememberToken.user_id == user.id, RememberToken.rotated_at == case.live.clock.now())
        ).all()
        assert rotated, "the remember-me rotation was lost"
        assert user.last_login_at == case.live.clock.now(), "the remember-me login was lost"


def remember_rotation(case: Case) -> None:
    """No session cookie, a remember-me cookie: rotation and a new session in the action's request."""
    rest_login(case, remember=True)
    case.reissues = True

    def arrange() -> None:
        case.http.cookies.set("appserver.session", None)
        case.live.clock.advance(5)
    case.arrange = arrange
    case.auth_checks.append(lambda: _remember_used(case))


def reissued_session(case: Case) -> None:
    """The session expired (idle): remember-me re-issues one in the action's request."""
    rest_login(case, remember=True)
    case.reissues = True
    case.arrange = lambda: case.live.clock.advance(IDLE_TIMEOUT + 1)
    case.auth_checks.append(lambda: _remember_used(case))


def failure_reset(case: Case) -> None:
    """Basic with the right password after a failure: the count is reset in that request."""
    case.basic = True

    def arrange() -> None:
        with db(case) as request:
            request.dbsession.execute(update(User).where(User.username == case.username).values(current_failed_logins=1))
    case.arrange = arrange

    def check() -> None:
        assert user_row(case).current_failed_logins == 0, "the failure reset was lost"
    case.auth_checks.append(check)


def hash_upgrade(case: Case) -> None:
    """Basic against an old-scheme hash: upgraded to argon2 in that request."""
    case.basic = True

    def arrange() -> None:
        with db(case) as request:
            request.dbsession.execute(
                update(User).where(User.username == case.username).values(password_hash=pbkdf2_sha256.hash(PASSWORD))
            )
    case.arrange = arrange

    def check() -> None:
        # The action may have changed the password since: either way, no pbkdf2 hash is left.
        assert user_row(case).password_hash.startswith("$argon2id$"), "the hash upgrade was lost"
    case.auth_checks.append(check)


AUTH_WRITES = {
    "touch": touch,
    "remember_rotation": remember_rotation,
    "reissued_session": reissued_session,
    "failure_reset": failure_reset,
    "hash_upgrade": hash_upgrade,
}


# --- the actions -------------------------------------------------------------------------------


def password_works(case: Case, password: str) -> bool:
    with db(case) as request:
        user = request.dbsession.scalar(select(User).where(User.username == case.username))
        return request.passwords.verify(password, user.password_hash)[0]


def live_sessions(case: Case, username: str | None = None) -> list[UserSession]:
    with db(case) as request:
        user = request.dbsession.scalar(select(User).where(User.username == (username or case.username)))
        return request.session_store.active_sessions(user.id)


def expect_password_changed(case: Case) -> None:
    assert password_works(case, NEW_PASSWORD), "the new password was not stored"
    assert not password_works(case, PASSWORD)


def rest_password(case: Case) -> Callable[[], None]:
    response = case.rest(
        "PUT", "/rest/api/2/myself/password", json={"currentPassword": PASSWORD, "password": NEW_PASSWORD}
    )
    assert response.status_code == 204, response.text
    return lambda: expect_password_changed(case)


def html_password(case: Case) -> Callable[[], None]:
    response = case.post(
        "/account/password",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD},
        form_page="/account",
    )
    assert response.status_code == 303, response.text
    return lambda: expect_password_changed(case)


def _expect_logged_out(case: Case, presented: str | None) -> Callable[[], None]:
    """The session the request used (the one presented, or the one remember-me issued in
    that very request) is revoked, and so is every remember-me series the client held."""
    now = case.live.clock.now()

    def check() -> None:
        with db(case) as request:
            user = request.dbsession.scalar(select(User).where(User.username == case.username))
            used = select(UserSession).where(UserSession.user_id == user.id, UserSession.created_at == now)
            if presented is not None:
                used = select(UserSession).where(UserSession.token_hash == hash_token(presented))
            sessions = request.dbsession.scalars(used).all()
            assert sessions and all(s.revoked_at is not None for s in sessions), "the logout was lost"
            series = request.dbsession.scalars(select(RememberToken).where(RememberToken.user_id == user.id)).all()
            assert all(t.revoked_at is not None for t in series), "the remember-me revocation was lost"
    return check


def _presented(case: Case) -> str | None:
    """The session cookie the action's request will present, if it will be live."""
    return None if case.reissues else case.http.cookies.get("appserver.session")


def rest_logout(case: Case) -> Callable[[], None]:
    presented = _presented(case)
    response = case.rest("DELETE", "/rest/auth/1/session")
    assert response.status_code == 204, response.text
    return _expect_logged_out(case, presented)


def html_logout(case: Case) -> Callable[[], None]:
    presented = _presented(case)
    response = case.post("/logout", {}, form_page="/account")
    assert response.status_code == 303, response.text
    return _expect_logged_out(case, presented)


def _second_session(case: Case) -> UserSession:
    other = Case(case.live, case.username)
    rest_login(other)
    return [s for s in live_sessions(case) if s.token_hash == hash_token(other.http.cookies["appserver.session"])][0]


def revoke_one(case: Case) -> Callable[[], None]:
    other = _second_session(case)
    response = case.post(f"/account/sessions/{other.id}/revoke", {}, form_page="/account")
    assert response.status_code == 303, response.text

    def check() -> None:
        assert other.id not in {s.id for s in live_sessions(case)}, "the revocation was lost"
    return check


def revoke_others(case: Case) -> Callable[[], None]:
    other = _second_session(case)
    response = case.post("/account/sessions/revoke-others", {}, form_page="/account")
    assert response.status_code == 303, response.text

    def check() -> None:
        assert other.id not in {s.id for s in live_sessions(case)}, "the revocation was lost"
    return check


def admin_deactivate(case: Case) -> Callable[[], None]:
    target = new_user(case.live)
    # The second step of the confirmation (the users page asks before deactivating).
    response = case.post(
        f"/admin/users/{user_row(case, target).id}/deactivate", {"confirm": "yes"}, form_page="/admin/users"
    )
    assert response.status_code == 303, response.text
    return lambda: _assert(not user_row(case, target).active, "the deactivation was lost")


def admin_unlock(case: Case) -> Callable[[], None]:
    target = new_user(case.live)
    with db(case) as request:
        request.dbsession.execute(
            update(User).where(User.username == target).values(
                current_failed_logins=5, locked_until=case.live.clock.now() + timedelta(hours=1)
            )
        )
    response = case.post(f"/admin/users/{user_row(case, target).id}/unlock", {}, form_page="/admin/users")
    assert response.status_code == 303, response.text

    def check() -> None:
        row = user_row(case, target)
        assert (row.current_failed_logins, row.locked_until) == (0, None), "the unlock was lost"
    return check


def admin_create(case: Case) -> Callable[[], None]:
    name = f"created{next(_names)}"
    response = case.post(
        "/admin/users", {"username": name, "password": "created-password-1", "display_name": "Created"},
        form_page="/admin/users",
    )
    assert response.status_code == 303, response.text
    return lambda: _assert(user_row(case, name) is not None, "the new account was lost")


def confirm_websudo(case: Case) -> None:
    """Submit the WebSudo prompt (its CSRF token and the password) as the browser would."""
    token = case.csrf("/websudo")
    response = case.http.post(
        case.url("/websudo"), data={"csrf_token": token, "websudo_password": PASSWORD}, allow_redirects=False
    )
    assert response.headers.get("X-Atlassian-WebSudo") == "Has-Authentication", response.text


def _assert(condition: bool, message: str) -> None:
    assert condition, message


ACTIONS = {
    "rest_password": (rest_password, False),
    "rest_logout": (rest_logout, False),
    "html_password": (html_password, False),
    "html_logout": (html_logout, False),
    "revoke_one": (revoke_one, False),
    "revoke_others": (revoke_others, False),
    "admin_deactivate": (admin_deactivate, True),
    "admin_unlock": (admin_unlock, True),
    "admin_create": (admin_create, True),
}

REST_ACTIONS = {"rest_password", "rest_logout"}
COOKIE_ONLY = {"rest_logout", "html_logout", "revoke_one"}  # a Basic client has no session to end

TABLE = [
    (action, write)
    for action in ACTIONS
    for write in AUTH_WRITES
    if (write in ("remember_rotation", "reissued_session")) <= (action in REST_ACTIONS)
    and (write in ("failure_reset", "hash_upgrade")) <= (action not in COOKIE_ONLY)
]


@pytest.mark.parametrize(("action", "write"), TABLE)
def test_the_actions_write_survives_the_authentication_write_before_it(live, action, write):
    perform, admin = ACTIONS[action]
    case = Case(live, new_user(live, admin=admin))
    AUTH_WRITES[write](case)
    if admin and not case.basic:
        confirm_websudo(case)  # an administrator's cookie session confirms its password first
    check_action = perform(case)
    check_action()
    for check in case.auth_checks:
        check()


def test_the_table_covers_every_action_and_every_write():
    assert {action for action, _ in TABLE} == set(ACTIONS)
    assert {write for _, write in TABLE} == set(AUTH_WRITES)
    assert len(TABLE) >= 25
