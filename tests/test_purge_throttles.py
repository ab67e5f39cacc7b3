"""``purge-sessions`` forgets the failure counts of unknown names (login_throttles) once no
lock-out can follow from them, and never one counted while it runs."""
from __future__ import annotations

import threading
from datetime import timedelta

from pyramid.scripting import prepare
from sqlalchemy import select

import appserver
from appserver.models import LoginThrottle, get_engine
from appserver.security.login import _name_hash, check_password, purge_throttles

from .support import base_settings, fresh_database



def add_throttle(dbsession, name, *, failed_ago, locked_for=None, now):
    dbsession.add(LoginThrottle(
        name_hash=_name_hash(name), current_failed_logins=5, last_failed_login_at=now - failed_ago,
        locked_until=None if locked_for is None else now + locked_for,
    ))
    dbsession.flush()


def counts(dbsession) -> dict[str, int]:
    rows = dbsession.execute(select(LoginThrottle.name_hash, LoginThrottle.current_failed_logins))
    by_hash = {_name_hash(name): name for name in ("stale", "recent", "locked", "stale-2")}
    return {by_hash[key]: count for key, count in rows}


def test_only_counts_past_the_longest_lock_out_are_forgotten(app_request):
    now, settings = app_request.now, app_request.appserver_settings
    horizon = timedelta(seconds=settings.max_lockout_seconds)
    add_throttle(app_request.dbsession, "stale", failed_ago=horizon + timedelta(seconds=1), now=now)
    add_throttle(app_request.dbsession, "stale-2", failed_ago=horizon, now=now)
    add_throttle(app_request.dbsession, "recent", failed_ago=horizon - timedelta(seconds=1), now=now)
    # Failed long ago, but locked out still (a lock is never forgotten while it holds).
    add_throttle(app_request.dbsession, "locked", failed_ago=horizon * 2, locked_for=timedelta(seconds=5), now=now)
    assert purge_throttles(app_request, batch_size=1) == 1
    assert purge_throttles(app_request, batch_size=10) == 1
    assert purge_throttles(app_request, batch_size=10) == 0
    assert counts(app_request.dbsession) == {"recent": 5, "locked": 5}


def test_a_failure_counted_while_the_purge_runs_is_kept(live_database_url):
    """The purge picks a stale name; before it deletes, a guess at that name is counted and
    committed (PostgreSQL: the SELECT took no lock; SQLite: the guess waits for the purge's
    write lock and counts on a new row). Either way the guess's count survives: before, the
    DELETE by name alone dropped it on PostgreSQL."""
    url = fresh_database(live_database_url)
    engine = get_engine({"sqlalchemy.url": url})
    settings = base_settings(url)
    settings["appserver.dbengine"] = engine
    app = appserver.main({}, **settings)
    try:
        arrange = prepare(registry=app.registry)
        with arrange["request"].tm:
            request = arrange["request"]
            horizon = timedelta(seconds=request.appserver_settings.max_lockout_seconds)
            add_throttle(request.dbsession, "stale", failed_ago=horizon * 2, now=request.now)
        arrange["closer"]()

        guessed = threading.Event()

        def guess() -> None:
            env = prepare(registry=app.registry)
            try:
                check_password(env["request"], "stale", "a guess", channel="basic")
            finally:
                env["closer"]()
                guessed.set()

        purge = prepare(registry=app.registry)
        request = purge["request"]
        request.method = "POST"  # as the command line's purge: a writer (SQLite's write lock)
        real_scalars = None

        def scalars_then_guess(*args, **kw):
            picked = list(real_scalars(*args, **kw))
            threading.Thread(target=guess, daemon=True).start()
            guessed.wait(timeout=2)  # SQLite: the guess waits for this transaction's lock
            return picked

        with request.tm:
            real_scalars = request.dbsession.scalars
            request.dbsession.scalars = scalars_then_guess
            purge_throttles(request, batch_size=10)
        purge["closer"]()
        assert guessed.wait(timeout=30)

        check = prepare(registry=app.registry)
        with check["request"].tm:
            kept = check["request"].dbsession.scalar(
                select(LoginThrottle.current_failed_logins).where(LoginThrottle.name_hash == _name_hash("stale"))
            )
        check["closer"]()
        assert kept is not None and kept >= 1
    finally:
        engine.dispose()
