"""The database goes away in the middle of a view, after authentication succeeded (found by
the load suite: PostgreSQL restarted during POST /logout). The answer is the 503 page with
Retry-After, for nobody -- not a 500 from the page layout reading the user's row again
through a session whose flush just failed."""
from __future__ import annotations

import re

from sqlalchemy import event
from sqlalchemy.exc import OperationalError

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def test_the_database_lost_during_an_html_view_is_a_503_not_a_500(testapp, users, dbengine):
    login = testapp.get("/login")
    testapp.post("/login", {"os_username": "fred", "os_password": "fred-password",
                            "csrf_token": CSRF.search(login.text).group(1)}, status=303)
    home = testapp.get("/")
    assert home.headers["X-AUSERNAME"] == "fred"

    def connection_lost(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO AUTH_EVENTS"):  # logout's audit row
            raise OperationalError(statement, {}, Exception("terminating connection due to administrator command"))

    event.listen(dbengine, "before_cursor_execute", connection_lost)
    try:
        response = testapp.post("/logout", {"csrf_token": CSRF.search(home.text).group(1)}, expect_errors=True)
    finally:
        event.remove(dbengine, "before_cursor_execute", connection_lost)
    assert response.status_int == 503, response.text[:500]
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["X-AUSERNAME"] == "anonymous"
    assert "Try again" in response.text and "Not logged in" in response.text
    # Nothing was written: the session still works.
    assert testapp.get("/").headers["X-AUSERNAME"] == "fred"
