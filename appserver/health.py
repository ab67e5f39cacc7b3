"""``GET /status``, Jira Data Center's health check, for the proxy, load balancers and operators.

``200 {"state": "RUNNING"}`` when this process can serve (its database answers, with the
project's tables), ``503 {"state": "ERROR"}`` otherwise. It is answered by a tween above
pyramid_tm and authentication: no transaction, no credential read (a session cookie, Basic
credentials or ``os_authType`` are ignored), no cookie set, one read of the migration table
on a pooled connection. A load balancer may call it every second on every process.

An empty database (a new file, a schema dropped) fails every request with a 503, so it is
``ERROR`` too, and so is one at an older migration than this code's (started before
``initdb`` migrated it: every request that needs a new column fails); so is a SQLite file deleted or replaced (a restore by ``mv``) under the
running server: its pooled connections go on with the old file, writing to one that is
lost at the next start, or failing every write with "readonly database".

A database that is up but does not answer (frozen, or a failover's address not yet moved)
sends no error: the probe runs in a thread of its own and the answer is ``ERROR``
after :data:`DEADLINE_SECONDS`. Until that probe returns, later calls wait on the same one
instead of piling more connections and threads onto a database that is not answering.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pyramid.config import Configurator
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import Engine

from .errors import jira_error_body
from .models import sqlite_file_changed
from .rendering import json_response
from .repeated_warning import RepeatedWarning
from .security.responses import ANONYMOUS
from .startup import database_problem, missing_sqlite_file, safe_url

log = logging.getLogger(__name__)
#: A load balancer asks every second: one line per kind of problem every few seconds.
problems = RepeatedWarning(log)

Handler = Callable[[Request], Response]

STATUS_PATH = "/status"
RETRY_AFTER_SECONDS = 5
#: Longer than a healthy probe ever takes, shorter than a proxy's health-check timeout.
DEADLINE_SECONDS = 3.0


class DatabaseProbe:
    """The schema probe on the registry's engine, with a deadline, one at a time per process."""

    def __init__(self, registry: Registry, deadline: float = DEADLINE_SECONDS) -> None:
        self.registry = registry
        self.deadline = deadline
        self._lock = threading.Lock()
        self._running: _Probe | None = None

    def reachable(self) -> bool:
        with self._lock:
            probe = self._running
            if probe is None or probe.done.is_set():
                probe = self._running = _Probe()
                # A daemon thread: one stuck on a frozen database must not hold up the
                # process's exit (a graceful stop), as an executor's worker would.
                threading.Thread(target=probe.run, args=(self.registry,), name="appserver-status",
                                 daemon=True).start()
        if not probe.done.wait(self.deadline):
            log.warning("status: the database has not answered for %.0f s", self.deadline)
            return False
        return probe.reachable


#: The table every migrated database has (``appserver CONFIG initdb`` makes it).
_SCHEMA_PROBE = text("SELECT version_num FROM alembic_version")


#: A registry's ``code_revisions`` until the ini's migrations are read (``startup.app_factory``):
#: an application made without an ini file knows none, and never finds its database behind.
NO_REVISIONS: tuple[str | None, frozenset[str]] = (None, frozenset())


def probe_problem(registry: Registry) -> tuple[str, str] | None:
    """Why this process cannot serve now, as (kind, one line), or None when it can: the
    database answers, holds the project's tables, is at no older migration than this code
    knows (``registry.code_revisions``: a process started before ``initdb`` migrated it fails
    every request that touches a new column), and is still the file it opened."""
    engine = registry.dbengine
    if missing_sqlite_file(engine.url):
        return "missing file", (f"the database file {safe_url(engine.url)} does not exist (deleted, or "
                                "never made: run 'appserver CONFIG initdb')")
    try:
        with engine.connect() as connection:
            revision = connection.execute(_SCHEMA_PROBE).scalar()
            changed = sqlite_file_changed(connection)
    except (sa_exc.DBAPIError, sa_exc.TimeoutError) as error:  # refused, no tables, ...
        problem = database_problem(error, engine.url)
        return problem, problem
    if changed is not None:
        return changed, (f"the database file {safe_url(engine.url)} was {changed} while the server ran: "
                         "its connections still use the old one; restart the server")
    head, older = registry.code_revisions
    if revision in older:
        return "behind", (f"the database {safe_url(engine.url)} is at revision {revision}, this code "
                          f"needs {head}: run 'appserver CONFIG initdb'")
    return None


class _Probe:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.reachable = False

    def run(self, registry: Registry) -> None:
        try:
            problem = probe_problem(registry)
            if problem is not None:
                problems.warning(problem[0], "status: %s", problem[1])
                return
            self.reachable = True
        except Exception:  # answered as unreachable; never an unhandled thread exception
            log.exception("status: the database check failed")
        finally:
            self.done.set()


def database_reachable(registry: Registry) -> bool:
    return registry.database_probe.reachable()


#: Seconds between two checks of a database that was found unavailable.
WATCH_INTERVAL_SECONDS = 5.0


def _database_away(error: BaseException) -> bool:
    """A refusal because the database cannot be used (unreachable, not migrated, its file
    gone), not because it is busy: a lock held past ``lock_timeout`` (SQLSTATE 55P03) or a
    pool with no connection free. For those it answers, /status says RUNNING, and so would
    the watch at once: "it answers again" when it never stopped (an outside review)."""
    if isinstance(error, sa_exc.TimeoutError):
        return False
    return getattr(getattr(error, "orig", None), "sqlstate", None) != "55P03"


class OutageWatch:
    """Says once when the database can be used again after requests were refused for want of it.

    The refusals are logged at most one line per kind every few seconds
    (:class:`~appserver.repeated_warning.RepeatedWarning`); nothing said when the database
    came back, so the log could not tell how long an outage lasted, and a second one soon
    after left no line of its own (an outside review). The first refusal starts one thread
    that asks, as /status does (:func:`probe_problem`), every :data:`WATCH_INTERVAL_SECONDS`
    until the database can serve; requests pay nothing for it."""

    def __init__(self, registry: Registry, interval: float = WATCH_INTERVAL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry, self.interval, self.clock = registry, interval, clock
        self._lock = threading.Lock()
        self.since: float | None = None
        self.refused = 0
        self._watching = False

    def refused_request(self, error: BaseException) -> None:
        if not _database_away(error):
            return
        with self._lock:
            self.refused += 1
            if self.since is None:
                self.since = self.clock()
            if self._watching:
                return
            self._watching = True
        threading.Thread(target=self._watch, name="appserver-outage", daemon=True).start()

    def _watch(self) -> None:
        while True:
            time.sleep(self.interval)
            self.check()
            with self._lock:  # one thread at a time: a refusal meanwhile keeps this one going
                if self.since is None:
                    self._watching = False
                    return

    def check(self) -> bool:
        """Ask the database once; when it can serve after refusals, say so. Whether it can."""
        try:
            if probe_problem(self.registry) is not None:
                return False  # still away: the refusals say why
        except Exception:
            log.exception("the database check after refusals failed")
            return False
        with self._lock:
            if self.since is None:
                return True
            away, refused = self.clock() - self.since, self.refused
            self.since, self.refused = None, 0
        log.warning("the database can be used again, after %.0f s in which %d request(s) were answered 503",
                    away, refused)
        return True


def status_response(request: Request) -> Response:
    if request.method not in ("GET", "HEAD"):
        response = json_response(jira_error_body([f"{request.method} is not allowed here: use GET."]), 405)
        response.allow = ("GET", "HEAD")
    elif database_reachable(request.registry):
        response = json_response({"state": "RUNNING"})
    else:
        response = json_response({"state": "ERROR"}, 503)
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response.cache_control = "no-store"
    # Served for nobody, whatever credentials came along (none is read): every answer names
    # its user, as the refusals made before authentication do.
    response.headers.update([ANONYMOUS])
    return response


def status_tween_factory(handler: Handler, registry: Registry) -> Handler:
    def status_tween(request: Request) -> Response:
        # The raw WSGI path: request.path_info would raise for a path that is not UTF-8, which
        # the tweens below this one answer with a 400.
        if request.environ.get("PATH_INFO") == STATUS_PATH:
            return status_response(request)
        return handler(request)

    return status_tween


def includeme(config: Configurator) -> None:
    config.registry.database_probe = DatabaseProbe(config.registry)
    config.registry.code_revisions = NO_REVISIONS
    config.registry.outage_watch = OutageWatch(config.registry)
    config.add_tween("appserver.health.status_tween_factory", over="pyramid_tm.tm_tween_factory")
