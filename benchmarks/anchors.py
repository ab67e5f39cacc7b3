"""The two anchors: the least a JSON view and a cookie check can cost on this stack."""
from __future__ import annotations

import hashlib
import threading
from datetime import datetime, timezone
from typing import Any

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.router import Router
from sqlalchemy import bindparam, select

from appserver.models import get_engine, metadata
from appserver.views.rest.api import server_info_body

SESSIONS = metadata.tables["sessions"]
USERS = metadata.tables["users"]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def bare_json_app() -> Router:
    """One route, one view, Pyramid's JSON renderer: nothing else. It answers what the
    project's serverInfo answers (the same eight fields, made by the same function, the time
    of the request included), so that the ratio measures what the stack around the view
    costs, not the size of the answer."""

    def server_info(request: Request) -> dict[str, Any]:
        return server_info_body(request.application_url, _now())

    with Configurator() as config:
        config.add_route("info", "/rest/api/2/serverInfo")
        config.add_view(server_info, route_name="info", renderer="json")
    return config.make_wsgi_app()


def _refused(request: Request, why: str) -> dict[str, Any]:
    request.response.status = 401
    return {"errorMessages": [why], "errors": {}}


def _session_statement():
    return (
        select(
            USERS.c.username,
            USERS.c.display_name,
            USERS.c.active,
            SESSIONS.c.revoked_at,
            SESSIONS.c.expires_at,
        )
        .select_from(SESSIONS.join(USERS, SESSIONS.c.user_id == USERS.c.id))
    )


def bare_cookie_app(database_url: str, cookie_name: str, pool_size: int) -> Router:
    """Hash the cookie, one indexed SELECT of session JOIN user (SQLAlchemy Core), check
    the row is live, answer JSON: what an uncached cookie check minimally needs."""
    settings: dict[str, Any] = {"sqlalchemy.url": database_url}
    if not database_url.startswith("sqlite:///:memory:"):
        settings["sqlalchemy.pool_size"] = str(pool_size)
    engine = get_engine(settings)
    statement = _session_statement()

    def myself(request: Request):
        token = request.cookies.get(cookie_name)
        if token is None:
            return _refused(request, "no cookie")
        digest = hashlib.sha256(token.encode("ascii")).hexdigest()
        with engine.connect() as connection:
            row = connection.execute(statement.where(SESSIONS.c.token_hash == digest)).first()
        if row is None or row.revoked_at is not None or not row.active or row.expires_at <= _now():
            return _refused(request, "stale cookie")
        return {"name": row.username, "displayName": row.display_name, "active": row.active}

    with Configurator() as config:
        config.add_route("myself", "/rest/api/2/myself")
        config.add_view(myself, route_name="myself", renderer="json")
    return config.make_wsgi_app()


def driver_cookie_app(database_url: str, cookie_name: str) -> Router:
    """The bare cookie view without SQLAlchemy at run time: the same SELECT (compiled once)
    on a connection of the driver's own that each thread keeps, as a Django with persistent
    connections keeps one per thread. The least a cookie check by a database lookup costs
    in a Pyramid view on this machine: the Django comparison's floor, not a design (no pool,
    no reconnection, no type conversion beyond the expiry)."""
    engine = get_engine({"sqlalchemy.url": database_url})
    statement = _session_statement().where(SESSIONS.c.token_hash == bindparam("token_hash"))
    sql = str(statement.compile(dialect=engine.dialect))
    sqlite = engine.dialect.name == "sqlite"
    engine.dispose()
    local = threading.local()

    def connect():
        if sqlite:
            import sqlite3

            return sqlite3.connect(database_url.split("///", 1)[1], isolation_level=None)
        import psycopg

        return psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True)

    def myself(request: Request):
        token = request.cookies.get(cookie_name)
        if token is None:
            return _refused(request, "no cookie")
        digest = hashlib.sha256(token.encode("ascii")).hexdigest()
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = connect()
        row = connection.execute(sql, (digest,) if sqlite else {"token_hash": digest}).fetchone()
        if row is not None:
            username, display_name, active, revoked_at, expires_at = row
            if sqlite:  # stored as naive UTC text
                expires_at = datetime.fromisoformat(expires_at).replace(tzinfo=timezone.utc)
        if row is None or revoked_at is not None or not active or expires_at <= _now():
            return _refused(request, "stale cookie")
        return {"name": username, "displayName": display_name, "active": bool(active)}

    with Configurator() as config:
        config.add_route("myself", "/rest/api/2/myself")
        config.add_view(myself, route_name="myself", renderer="json")
    return config.make_wsgi_app()
