"""A transaction left open with an account's row locked (in psql, say) must not take every
worker thread, one request at a time, for ever: on PostgreSQL a statement waits at most
``appserver.database.lock_timeout`` for a lock, then the request is a 503 with Retry-After,
and the account works again as soon as the lock is gone."""
from __future__ import annotations

import os
import time

import pytest
import requests
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError

from appserver.models import User, get_engine, is_transient

from .conftest import DATABASES
from .support import create_user, postgresql_live_server, sibling_database

pytestmark = pytest.mark.skipif("postgresql" not in DATABASES, reason="needs TEST_DATABASE_URL (PostgreSQL)")


def test_a_lock_held_for_long_is_a_503_until_it_is_released(caplog):
    with postgresql_live_server("locks", **{"appserver.database.lock_timeout": "300"}) as server:
        with server.request() as request:
            create_user(request, "held", "held-password-1")
        myself = server.url + "/rest/api/2/myself"
        with server.engine.connect() as forgotten:  # BEGIN; UPDATE users ...; and no COMMIT
            forgotten.execute(update(User).where(User.username == "held").values(display_name="Held"))
            # A first Basic request checks the password, which locks the account's row.
            response = requests.get(myself, auth=("held", "held-password-1"), timeout=30)
            assert response.status_code == 503, response.text
            assert int(response.headers["Retry-After"]) > 0
            assert response.json()["errorMessages"]
            assert "waited longer than appserver.database.lock_timeout" in caplog.text
            forgotten.rollback()
        assert requests.get(myself, auth=("held", "held-password-1"), timeout=30).status_code == 200


def test_the_setting_reaches_every_connection():
    url = sibling_database(os.environ["TEST_DATABASE_URL"], "locks")
    for value, shown in (("2500", "2500ms"), ("0", "0")):
        engine = get_engine({"sqlalchemy.url": url, "appserver.database.lock_timeout": value})
        with engine.connect() as connection:
            assert connection.execute(text("SHOW lock_timeout")).scalar() == shown
        engine.dispose()
    engine = get_engine({"sqlalchemy.url": url})  # the default
    with engine.connect() as connection:
        assert connection.execute(text("SHOW lock_timeout")).scalar() == "10s"
    engine.dispose()


def test_a_transaction_left_idle_is_ended_by_the_server():
    """A process frozen (SIGSTOP) with an account's row locked held it until it was killed:
    every other process's logins of that account waited lock_timeout and answered 503 (an
    outside review). The server now ends such a transaction, and the lock goes with it."""
    url = sibling_database(os.environ["TEST_DATABASE_URL"], "locks")
    engine = get_engine({"sqlalchemy.url": url, "appserver.database.idle_in_transaction_timeout": "200"})
    with engine.connect() as connection:
        assert connection.execute(text("SHOW idle_in_transaction_session_timeout")).scalar() == "200ms"
        connection.execute(text("SELECT 1"))  # a transaction, now idle
        time.sleep(0.5)  # the server's own timer: nothing here to inject a clock into
        with pytest.raises(DBAPIError) as ended:
            connection.execute(text("SELECT 1"))
        assert is_transient(ended.value)  # the request, had this been one, runs again
    engine.dispose()
    engine = get_engine({"sqlalchemy.url": url})  # the default
    with engine.connect() as connection:
        assert connection.execute(text("SHOW idle_in_transaction_session_timeout")).scalar() == "30s"
    engine.dispose()
