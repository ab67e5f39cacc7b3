"""``purge-sessions`` against what happens while it runs: it forgets the failure counts of
unknown names (login_throttles) once no lock-out can follow from them, and never one counted
meanwhile; it deletes dead sessions, and never one a request touched meanwhile."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from pyramid.scripting import prepare
from sqlalchemy import select

import appserver
from appserver.models import LoginThrottle, UserSession, get_engine
from appserver.models.units import unit
from appserver.security.login import _name_hash, check_password, purge_throttles
from appserver.security.sessions import SessionStore

from .support import CHEAP_PASSWORDS, base_settings, create_user, fresh_database



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


@pytest.fixture
def own_app(live_database_url):
    """An app on a database of its own, which commits for real (the tests' transaction
    could not show a race between two connections)."""
    url = fresh_database(live_database_url)
    engine = get_engine({"sqlalchemy.url": url})
    settings = base_settings(url)
    settings["appserver.dbengine"] = engine
    settings["appserver.password_context"] = CHEAP_PASSWORDS
    yield appserver.main({}, **settings)
    engine.dispose()


def while_the_purge_reads(request, work) -> threading.Event:
    """Run ``work`` in another thread right after the purge's SELECT, and give it up to 2 s
    before the purge goes on (SQLite: it waits for the purge's write lock meanwhile)."""
    done = threading.Event()
    real_scalars = request.dbsession.scalars

    def run() -> None:
        try:
            work()
        finally:
            done.set()

    def scalars_then_work(*args, **kw):
        picked = list(real_scalars(*args, **kw))
        threading.Thread(target=run, daemon=True).start()
        done.wait(timeout=2)
        return picked

    request.dbsession.scalars = scalars_then_work
    return done


def test_a_failure_counted_while_the_purge_runs_is_kept(own_app):
    """The purge picks a stale name; before it deletes, a guess at that name is counted and
    committed (PostgreSQL: the SELECT took no lock; SQLite: the guess waits for the purge's
    write lock and counts on a new row). Either way the guess's count survives: before, the
    DELETE by name alone dropped it on PostgreSQL."""
    arrange = prepare(registry=own_app.registry)
    with arrange["request"].tm:
        request = arrange["request"]
        horizon = timedelta(seconds=request.appserver_settings.max_lockout_seconds)
        add_throttle(request.dbsession, "stale", failed_ago=horizon * 2, now=request.now)
    arrange["closer"]()

    def guess() -> None:
        env = prepare(registry=own_app.registry)
        try:
            check_password(env["request"], "stale", "a guess", channel="basic")
        finally:
            env["closer"]()

    purge = prepare(registry=own_app.registry)
    request = purge["request"]
    request.method = "POST"  # as the command line's purge: a writer (SQLite's write lock)
    with request.tm:
        guessed = while_the_purge_reads(request, guess)
        purge_throttles(request, batch_size=10)
    purge["closer"]()
    assert guessed.wait(timeout=30)

    check = prepare(registry=own_app.registry)
    with check["request"].tm:
        kept = check["request"].dbsession.scalar(
            select(LoginThrottle.current_failed_logins).where(LoginThrottle.name_hash == _name_hash("stale"))
        )
    check["closer"]()
    assert kept is not None and kept >= 1


def test_a_session_touched_while_the_purge_runs_is_kept_or_its_request_refused(own_app):
    """The purge picks a session at the end of its idle time; before it deletes, a request
    that found it live touches it (its answer is on its way). Either the session stays
    (PostgreSQL: the DELETE checks the condition again on the touched row) or the touch
    finds it gone and that request is refused (SQLite: the touch waits for the purge's
    write lock): never a request served whose session the purge then deletes."""
    arrange = prepare(registry=own_app.registry)
    with arrange["request"].tm:
        request = arrange["request"]
        user = create_user(request, "idle", "idle-password-1")
        request.dbsession.flush()
        session = SessionStore.of(request).issue(user).session
        idle = timedelta(seconds=request.appserver_settings.idle_timeout)
        session.last_seen_at = request.now - idle  # dead by a hair, for the purge's clock
        request.dbsession.flush()
        session_id = session.id
    arrange["closer"]()
    lookup = prepare(registry=own_app.registry)  # what the request in flight read: live
    with lookup["request"].tm:
        found = lookup["request"].dbsession.get(UserSession, session_id)
    lookup["closer"]()

    touched: list[bool] = []

    def touch() -> None:
        env = prepare(registry=own_app.registry)
        try:
            with unit(env["request"], write=True) as db:
                store = SessionStore.of(env["request"], db)
                touched.append(store.touch(found))
        finally:
            env["closer"]()

    purge = prepare(registry=own_app.registry)
    request = purge["request"]
    request.method = "POST"
    with request.tm:
        done = while_the_purge_reads(request, touch)
        request.session_store.purge_batch(10)
    purge["closer"]()
    assert done.wait(timeout=30) and len(touched) == 1

    check = prepare(registry=own_app.registry)
    with check["request"].tm:
        kept = check["request"].dbsession.get(UserSession, session_id) is not None
    check["closer"]()
    assert kept or not touched[0], "a touched session was purged"
