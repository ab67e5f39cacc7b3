"""``GET /status`` (Jira Data Center's health check) and the opt-in ``X-Appserver-Process``
header (issue 13: what nginx, load balancers and operators ask a process)."""
from __future__ import annotations

import base64
import os
import socket
from pathlib import Path

import pytest
from sqlalchemy import func, make_url, select
from sqlalchemy.pool import NullPool

from appserver.models import LoginThrottle, UserSession, get_engine
from appserver.settings import ConfigurationError

from .relay import TCPRelay
from .support import migrate
from .test_sessions import rest_login


def test_status_is_running_while_the_database_answers(testapp):
    response = testapp.get("/status")
    assert response.status_int == 200
    assert response.json == {"state": "RUNNING"}
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert testapp.head("/status").status_int == 200


def test_status_reads_no_credential_and_sets_no_cookie(testapp, users, dbsession, count_statements):
    """Whatever credentials come along (a live cookie, a stale one, wrong Basic, a demand for
    Basic), /status looks at none: one SELECT 1, no failure counted, no cookie, no identity."""
    live = rest_login(testapp)
    wrong_basic = "Basic " + base64.b64encode(b"fred:wrong-password").decode()
    for headers in (
        {"Cookie": f"appserver.session={live}"},
        {"Cookie": "appserver.session=" + "x" * 43},  # stale: elsewhere it is deleted or a 401
        {"Authorization": wrong_basic},  # elsewhere a 401 and a failure counted
    ):
        count_statements.reset()
        response = testapp.get("/status?os_authType=basic", headers=headers)
        assert response.status_int == 200 and response.json == {"state": "RUNNING"}
        assert "Set-Cookie" not in response.headers
        assert "X-AUSERNAME" not in response.headers and "X-Seraph-LoginReason" not in response.headers
        assert [" ".join(s.split()) for s in count_statements.statements] == ["SELECT 1"]
    dbsession.expire_all()
    assert dbsession.scalar(select(func.count()).select_from(LoginThrottle)) == 0
    assert dbsession.scalar(select(func.count()).select_from(UserSession)) == 1  # the login only


def test_status_accepts_only_get_and_head(testapp):
    response = testapp.post("/status", status=405)
    assert response.headers["Allow"] == "GET, HEAD"
    assert response.json == {"errorMessages": ["POST is not allowed here: use GET."], "errors": {}}


def unreachable_url(database_url: str, tmp_path: Path) -> str:
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'no-such-directory' / 'app.sqlite'}"
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return make_url(database_url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def test_status_is_an_error_while_the_database_is_unreachable(make_app, database_url, tmp_path):
    engine = get_engine({"sqlalchemy.url": unreachable_url(database_url, tmp_path)})
    app = make_app(**{"appserver.dbengine": engine})
    response = app.get("/status", status=503)
    assert response.json == {"state": "ERROR"}
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["Cache-Control"] == "no-store"
    engine.dispose()


def test_status_recovers_by_itself_when_the_database_returns(make_app, database_url, tmp_path):
    """The database goes and comes back: ERROR, then RUNNING again, with no restart."""
    if database_url.startswith("sqlite"):
        directory, away = tmp_path / "data", tmp_path / "unmounted"
        directory.mkdir()
        engine = get_engine({"sqlalchemy.url": f"sqlite:///{directory / 'app.sqlite'}", "sqlalchemy.poolclass": NullPool})
        migrate(engine)
        stop, restart, relay = (lambda: directory.rename(away)), (lambda: away.rename(directory)), None
    else:
        real = make_url(database_url)
        relay = TCPRelay(real.host or "127.0.0.1", real.port or 5432)
        relay.start()
        via_relay = real.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
        engine = get_engine({"sqlalchemy.url": via_relay, "sqlalchemy.pool_pre_ping": "true"})
        stop, restart = relay.stop, relay.start
    app = make_app(**{"appserver.dbengine": engine})
    try:
        assert app.get("/status").json == {"state": "RUNNING"}
        stop()
        assert app.get("/status", status=503).json == {"state": "ERROR"}
        restart()
        assert app.get("/status").json == {"state": "RUNNING"}
    finally:
        engine.dispose()
        if relay is not None:
            relay.stop()


# --- X-Appserver-Process ---------------------------------------------------------------------


def test_no_process_header_by_default(testapp):
    for path in ("/", "/status", "/rest/api/2/serverInfo", "/static/style.css"):
        assert "X-Appserver-Process" not in testapp.get(path).headers


def test_the_process_header_names_host_and_process_on_every_response(make_app):
    app = make_app(**{"appserver.process_header": "true"})
    expected = f"{socket.gethostname()}:{os.getpid()}"
    for path, status in (("/", 200), ("/status", 200), ("/static/style.css", 200), ("/nowhere", 404),
                         ("/rest/api/2/myself", 401)):
        assert app.get(path, status=status).headers["X-Appserver-Process"] == expected


def test_the_process_header_can_be_turned_on_from_the_environment(make_app, monkeypatch):
    monkeypatch.setenv("APPSERVER_PROCESS_HEADER", "true")
    assert "X-Appserver-Process" in make_app().get("/status").headers


def test_a_bad_process_header_value_stops_start_up(make_app):
    with pytest.raises(ConfigurationError, match="appserver.process_header"):
        make_app(**{"appserver.process_header": "sometimes"})
