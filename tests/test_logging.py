"""No password and no token in any log line (issue 2, acceptance 6).

Every logger is captured at DEBUG and SQLAlchemy's at INFO -- what ``echo=True`` or
``[logger_sqlalchemy] level = INFO`` in an ini file would print -- across a whole lifecycle:
failed and successful logins through the form, the REST resource and Basic, a password typed
into the username field, cookie use, a password change, remember-me, logout, and an error
whose SQL carried a secret. Then every record, with its traceback, is searched for every
secret the test used.
"""
from __future__ import annotations

import base64
import hashlib
import logging
from datetime import datetime

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from appserver.models import User, get_engine
from appserver.security.tokens import hash_token

NEW_PASSWORD = "correct-horse-battery-staple-2"
WRONG_PASSWORDS = ["wrong-form-Pa55word", "wrong-rest-Pa55word", "wrong-basic-Pa55word"]
PASSWORD_AS_USERNAME = "my-secret-Pa55word-typed-as-username"
SECRET_IN_SQL = "secret-bound-value-in-a-failing-statement"


@pytest.fixture
def all_logs(caplog):
    """Listed first in a test's arguments, so SQLAlchemy's logging is on before the test's
    connection opens (a connection decides at creation whether it logs)."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    return caplog


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def log_text(caplog) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


def cookie_values(response) -> list[str]:
    values = []
    for header in response.headers.getall("Set-Cookie"):
        value = header.split(";", 1)[0].split("=", 1)[1]
        if value:
            values.append(value)
    return values


def test_a_whole_lifecycle_logs_no_password_and_no_token(all_logs, testapp, users, app, monkeypatch):
    secrets: set[str] = {"fred-password", "alice-password", NEW_PASSWORD, PASSWORD_AS_USERNAME, *WRONG_PASSWORDS}

    # The login form: wrong, a password typed into the username field, then right.
    for username, password in (("fred", WRONG_PASSWORDS[0]), (PASSWORD_AS_USERNAME, "x")):
        form = testapp.get("/login").forms["login-form"]
        form["os_username"], form["os_password"] = username, password
        assert "incorrect" in form.submit(status=200).text
    form = testapp.get("/login").forms["login-form"]
    form["os_username"], form["os_password"] = "fred", "fred-password"
    form["os_cookie"] = True
    secrets.update(cookie_values(form.submit(status=303)))
    testapp.get("/account")

    # A password change (rotates the session; the remembered login stays).
    form = testapp.get("/account").forms["password-form"]
    form["current_password"], form["new_password"], form["confirm_password"] = (
        "fred-password", NEW_PASSWORD, NEW_PASSWORD,
    )
    changed = form.submit()
    secrets.update(cookie_values(changed))

    # The REST session resource: wrong, right, use, log out, replay.
    testapp.post_json("/rest/auth/1/session", {"username": "alice", "password": WRONG_PASSWORDS[1]}, status=401)
    login = testapp.post_json("/rest/auth/1/session", {"username": "alice", "password": "alice-password"})
    token = login.json["session"]["value"]
    secrets.add(token)
    testapp.get("/rest/api/2/myself", status=200)
    testapp.delete("/rest/auth/1/session", status=204)
    testapp.set_cookie("appserver.session", token)
    testapp.get("/rest/api/2/myself", status=401)
    testapp.reset()

    # Basic: right, wrong, malformed (a password without a username), and with os_authType.
    testapp.get("/rest/api/2/myself", headers=basic("alice", "alice-password"), status=200)
    testapp.get("/rest/api/2/myself", headers=basic("alice", WRONG_PASSWORDS[2]), status=401)
    no_colon = base64.b64encode(WRONG_PASSWORDS[2].encode()).decode()
    testapp.get("/", headers={"Authorization": "Basic " + no_colon}, status=401)
    testapp.get("/?os_authType=basic", headers=basic("alice", "alice-password"), status=200)

    # A view fails with a secret among its SQL parameters: the 500 is logged with its
    # traceback, which must not show the parameter.
    def failing_notice(request):
        naive = datetime(2026, 1, 1)  # UTCDateTime refuses naive datetimes: a StatementError
        request.dbsession.execute(
            select(User).where(User.username == SECRET_IN_SQL, User.created_at > naive)
        )

    monkeypatch.setattr("appserver.views.pages.notice_for", failing_notice)
    failed = testapp.get("/", status=500)
    assert SECRET_IN_SQL not in failed.text
    secrets.add(SECRET_IN_SQL)

    text = log_text(all_logs)
    # The capture really saw SQL and the 500's traceback.
    assert "SELECT" in text and "FROM sessions" in text
    assert "Traceback" in text and "StatementError" in text
    for secret in sorted(secrets):  # usernames are logged case-folded, if at all
        assert secret.casefold() not in text.casefold(), f"{secret!r} was logged"
    assert "parameters hidden" in text
    # Not even the hashes: a logged hash is a database leak in small.
    hashes = [hash_token(value) for value in secrets if value.isascii()]
    hashes += [user.password_hash for user in users.values()]
    for value in hashes:
        assert value not in text, "a hash was logged"


def test_sql_errors_do_not_carry_their_parameters(database_url):
    """hide_parameters is part of every engine the app makes: an exception's text (which ends
    up in logs and error reports) says the parameters are hidden instead of showing them."""
    engine = get_engine({"sqlalchemy.url": database_url})
    assert engine.hide_parameters
    with engine.connect() as connection:
        with pytest.raises(DBAPIError) as raised:
            connection.execute(
                text("SELECT id FROM users WHERE username = :name AND no_such_column = 1"),
                {"name": SECRET_IN_SQL},
            )
    assert "FROM users" in str(raised.value)
    assert SECRET_IN_SQL not in str(raised.value)
    assert "hidden" in str(raised.value)
    engine.dispose()


def test_the_password_hash_of_a_new_user_is_not_logged(all_logs, app_request):
    from .support import create_user

    user = create_user(app_request, "carol", "carol-password")
    app_request.dbsession.flush()
    text = log_text(all_logs)
    assert "INSERT INTO users" in text
    assert user.password_hash not in text
    assert hashlib.sha256(b"carol-password").hexdigest() not in text and "carol-password" not in text
