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

import functools
import logging
import threading
import time
from pathlib import Path
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
                threading.Thread(target=probe.run, args=(self.registry.dbengine,), name="appserver-status",
                                 daemon=True).start()
        if not probe.done.wait(self.deadline):
            log.warning("status: the database has not answered for %.0f s", self.deadline)
            return False
        return probe.reachable


#: The table every migrated database has (``appserver CONFIG initdb`` makes it).
_SCHEMA_PROBE = text("SELECT version_num FROM alembic_version")


#: The project's migrations, beside the package (a checkout, as every documented set-up runs).
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


@functools.lru_cache(maxsize=1)
def code_revisions() -> tuple[str | None, frozenset[str]]:
    """This code's newest migration, and the older ones it knows: a database at one of those
    is behind (every request that needs a newer table or column fails), so ``/status`` is
    ``ERROR`` until ``initdb`` migrates it. A revision this code does not know is newer: a
    process of the previous release during a rolling upgrade, which goes on serving. Read
    once per process, on the first probe (alembic imports every migration)."""
    if not MIGRATIONS.is_dir():
        return None, frozenset()
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(MIGRATIONS))
    head = scripts.get_current_head()
    return head, frozenset(script.revision for script in scripts.walk_revisions()) - {head}


class _Probe:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.reachable = False

    def run(self, engine: Engine) -> None:
        try:
            if missing_sqlite_file(engine.url):
                problems.warning("missing file", "status: the database file %s does not exist (deleted, or "
                                 "never made: run 'appserver CONFIG initdb')", safe_url(engine.url))
                return
            with engine.connect() as connection:
                revision = connection.execute(_SCHEMA_PROBE).scalar()
                changed = sqlite_file_changed(connection)
            if changed is not None:
                problems.warning(
                    changed, "status: the database file %s was %s while the server ran: its connections "
                    "still use the old one; restart the server", safe_url(engine.url), changed)
                return
            head, older = code_revisions()
            if revision in older:
                problems.warning(
                    "behind", "status: the database %s is at revision %s, this code needs %s: run "
                    "'appserver CONFIG initdb'", safe_url(engine.url), revision, head)
                return
            self.reachable = True
        except (sa_exc.DBAPIError, sa_exc.TimeoutError) as error:  # refused, no tables, ...
            problem = database_problem(error, engine.url)
            problems.warning(problem, "status: %s", problem)
        except Exception:  # answered as unreachable; never an unhandled thread exception
            log.exception("status: the database check failed")
        finally:
            self.done.set()


def database_reachable(registry: Registry) -> bool:
    return registry.database_probe.reachable()


#: Seconds between two checks of a database that was found unavailable.
WATCH_INTERVAL_SECONDS = 5.0


class OutageWatch:
    """Says once when the database answers again after requests were refused for want of it.

    The refusals are logged at most one line per kind every few seconds
    (:class:`~appserver.repeated_warning.RepeatedWarning`); nothing said when the database
    came back, so the log could not tell how long an outage lasted, and a second one soon
    after left no line of its own (an outside review). The first refusal starts a thread
    that asks the database every :data:`WATCH_INTERVAL_SECONDS` until it answers; requests
    pay nothing for it."""

    def __init__(self, engine: Engine, interval: float = WATCH_INTERVAL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine, self.interval, self.clock = engine, interval, clock
        self._lock = threading.Lock()
        self.since: float | None = None
        self.refused = 0

    def refused_request(self) -> None:
        with self._lock:
            self.refused += 1
            if self.since is not None:
                return
            self.since = self.clock()
        threading.Thread(target=self._watch, name="appserver-outage", daemon=True).start()

    def _watch(self) -> None:
        while self.since is not None:
            time.sleep(self.interval)
            self.check()

    def check(self) -> bool:
        """Ask the database once; when it answers after refusals, say so. Whether it did."""
        try:
            with self.engine.connect() as connection:
                connection.execute(_SCHEMA_PROBE).all()
        except Exception:  # still away (or not migrated): the refusals are logged already
            return False
        with self._lock:
            if self.since is None:
                return True
            away, refused = self.clock() - self.since, self.refused
            self.since, self.refused = None, 0
        log.warning("the database answers again, after %.0f s in which %d request(s) were answered 503",
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
    config.registry.outage_watch = OutageWatch(config.registry.dbengine)
    config.add_tween("appserver.health.status_tween_factory", over="pyramid_tm.tm_tween_factory")
