"""The load-and-fault run: set up a target, put the Locust users on it, inject the faults,
check every acknowledged write again afterwards, look at the database's own counts, and
print one table. Exit status 1 when any invariant was violated.

    python -m tests.load                       # make loadtest: both targets, full length
    python -m tests.load --profile short --target sqlite

Targets: ``sqlite`` -- one waitress process serving development.ini on a temporary SQLite
file; ``postgresql`` -- two ``pserve production.ini`` processes sharing a private PostgreSQL
cluster (tests/pgserver.py) through a TCP relay (tests/relay.py), with three faults: the
relay cut, PostgreSQL restarted, one process killed with SIGKILL.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import requests
from sqlalchemy import create_engine, text

from ..pgserver import PostgresServer, find_bindir
from ..relay import TCPRelay
from .cookies import NO_AUTOMATIC_COOKIES
from .plan import PLAN_VARIABLE, PROFILES, Plan, Profile
from .report import TargetResult, render
from .targets import BIN, ROOT, Pserve, development_ini, new_server, production_ini, run_cli
from .verdict import Fault, audited_changes, judge, password_checks

LOCUSTFILE = ROOT / "tests" / "load" / "locustfile.py"
#: When the faults happen, as fractions of the run time.
RELAY_CUT_AT, RESTART_AT, KILL_AT = 0.2, 0.45, 0.7


def say(message: str) -> None:
    print(f"[loadtest {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def seed_accounts(database_url: str, plan: Plan) -> None:
    """Create the run's accounts with the application's own code (and password hashing)."""
    warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
    from pyramid.scripting import prepare

    import appserver

    from ..support import base_settings, create_user

    app = appserver.main({}, **base_settings(database_url))
    env = prepare(registry=app.registry)
    try:
        with env["request"].tm:
            for name, password, admin in plan.all_accounts():
                create_user(env["request"], name, password, admin=admin)
    finally:
        env["closer"]()
        app.registry.dbengine.dispose()


def run_locust(plan_path: Path, plan: Plan, seconds: int, folder: Path) -> subprocess.Popen:
    users = sum(plan.users.values())
    env = {**os.environ, PLAN_VARIABLE: str(plan_path), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    log = open(folder / "locust.log", "wb")
    return subprocess.Popen(
        [
            str(BIN / "locust"), "-f", str(LOCUSTFILE), "--headless", "--host", plan.servers[0],
            "--users", str(users), "--spawn-rate", str(users), "--run-time", f"{seconds}s",
            "--stop-timeout", "30", "--csv", str(folder / "locust"), "--html", str(folder / "locust.html"),
            "--only-summary", "--loglevel", "WARNING",
        ],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )


def after_the_run(plan: Plan, journal: dict[str, Any], server: str, database_url: str) -> dict[str, Any]:
    """Use every old cookie and password again (lost writes), and compare what the clients
    saw with the database's failure counts and audit trail (lock-out, half-written)."""
    http = requests.Session()
    http.cookies.set_policy(NO_AUTOMATIC_COOKIES)
    base_headers = {"X-Forwarded-Proto": "https"} if plan.https else {}

    def serves(user: str, cookie: str = "", auth: tuple[str, str] | None = None) -> tuple[bool, int]:
        headers = {**base_headers, **({"Cookie": cookie} if cookie else {})}
        for _ in range(20):  # the database may still be on its way back
            answer = http.get(server + "/rest/api/2/myself", headers=headers, auth=auth, timeout=20)
            if answer.status_code != 503:
                break
            time.sleep(0.5)
        named = (answer.headers.get("X-AUSERNAME") or "").casefold()
        if auth is not None and answer.headers.get("X-Seraph-LoginReason") == "AUTHENTICATION_DENIED":
            # Locked out: the run's own checks of old passwords are failed logins, and an
            # account whose password changed 15 times in the run reaches the hourly cap
            # (appserver.login.max_failures_per_hour), as it should. Its password is then
            # asked of the stored hash, as a login would check it.
            return stored_password_is(user, auth[1]), answer.status_code
        return answer.ok and named == user.casefold(), answer.status_code

    def stored_password_is(user: str, password: str) -> bool:
        from appserver.security.passwords import PasswordService

        engine = create_engine(database_url)
        with engine.connect() as connection:
            stored = connection.execute(text("SELECT password_hash FROM users WHERE username = :name"),
                                        {"name": user}).scalar_one()
        engine.dispose()
        return PasswordService().verify(password, stored)[0]

    after: dict[str, Any] = {"lost_writes": set(), "lost_examples": [], "half_written": [],
                             "lockout_excess": [], "uncounted": [], "locked": []}
    for write in journal["writes"]:
        for cookie in write["dead_cookies"]:
            if serves(write["user"], cookie)[0]:
                after["lost_writes"].add(write["id"])
                after["lost_examples"].append(f"after the run: {write['kind']} of {write['user']}: old cookie works")
    for name, state in journal["passwords"].items():
        works, status = serves(name, auth=(name, state["password"]))
        if not works and state.get("unsure"):
            works, status = serves(name, auth=(name, state["unsure"]))
        if status == 403:
            after["locked"].append(name)
        if not works:
            after["lost_writes"].add(f"final-{name}")
            after["lost_examples"].append(f"after the run: the last password of {name} is refused ({status})")
        if state["previous"] and serves(name, auth=(name, state["previous"]))[0]:
            after["lost_writes"].add(f"previous-{name}")
            after["lost_examples"].append(f"after the run: the previous password of {name} still works")

    engine = create_engine(database_url)
    with engine.connect() as connection:
        users = {
            row.username: row
            for row in connection.execute(text("SELECT id, username, total_failed_logins FROM users"))
        }
        events = Counter(
            (row.user_id, row.event)
            for row in connection.execute(text("SELECT user_id, event FROM auth_events WHERE user_id IS NOT NULL"))
        )
    engine.dispose()
    for name, _ in plan.accounts["victim"]:
        user = users[name]
        excess, uncounted = password_checks(
            name, plan.max_failures, database=user.total_failed_logins,
            audited=events[(user.id, "login.failed")], seen=journal["victim_checks"].get(name, 0),
        )
        after["lockout_excess"] += excess
        after["uncounted"] += uncounted
    for name, state in journal["passwords"].items():
        after["half_written"] += audited_changes(name, state, events[(users[name].id, "password.changed")])
    return after


class FaultInjector(threading.Thread):
    """Runs the fault schedule next to the load: [(seconds after start, name, action)], each
    action returning the Fault it caused."""

    def __init__(self, schedule: list[tuple[float, Callable[[], Fault]]]) -> None:
        super().__init__(name="faults", daemon=True)
        self.schedule = schedule
        self.faults: list[Fault] = []
        self.error: BaseException | None = None
        self.started_at = time.time()

    def run(self) -> None:
        try:
            for at, action in self.schedule:
                time.sleep(max(0.0, self.started_at + at - time.time()))
                self.faults.append(action())
        except BaseException as error:  # reported by the run, never swallowed
            self.error = error


def outage(name: str, stop: Callable[[], None], start: Callable[[], None], seconds: float) -> Callable[[], Fault]:
    def act() -> Fault:
        say(f"fault: {name}")
        began = time.time()
        stop()
        time.sleep(seconds)
        start()
        say(f"fault over: {name}")
        return Fault(name, began, time.time(), outage=True)

    return act


def kill(name: str, server: Pserve, index: int) -> Callable[[], Fault]:
    def act() -> Fault:
        say(f"fault: {name}")
        server.kill()
        return Fault(name, server.killed_at, server.killed_at, outage=False, server=index)

    return act


def run_target(target: str, profile: Profile, folder: Path) -> TargetResult:
    # A run starts from nothing: a second `make loadtest` found the first one's SQLite
    # database, whose accounts had other passwords than the new plan's.
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    seconds = profile.seconds[target]
    servers: list[Pserve] = []
    cleanups: list[Callable[[], None]] = []
    locust: subprocess.Popen | None = None
    try:
        if target == "sqlite":
            database_url = f"sqlite:///{folder / 'appserver.sqlite'}"
            env = {**os.environ, "PYTHONWARNINGS": "ignore:pkg_resources is deprecated:UserWarning"}
            server = new_server(lambda port: development_ini(folder, port, folder / "appserver.sqlite"), folder, env)
            servers.append(server)
            server.launch()  # it starts (imports) while the database is migrated and seeded
            run_cli(server.ini, "initdb", "--demo", env=env)
            name, https, schedule = "SQLite, 1 process", False, []
        else:
            say("starting a private PostgreSQL cluster")
            pg = PostgresServer()
            cleanups.append(pg.cleanup)
            pg.start()
            database_url = pg.url("appserver_load")
            relay = TCPRelay("127.0.0.1", pg.port)
            relay.start()
            cleanups.append(relay.stop)
            env = {**os.environ, "APPSERVER_SECRET": secrets.token_urlsafe(48),
                   "APPSERVER_DATABASE_URL": database_url, "APPSERVER_ALLOWED_HOSTS": "127.0.0.1",
                   "PYTHONWARNINGS": "ignore:pkg_resources is deprecated:UserWarning"}
            # The servers reach PostgreSQL through the relay, so the connection can be cut.
            served = {**env, "APPSERVER_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{relay.port}/appserver_load"}
            servers = [new_server(lambda port: production_ini(folder, port), folder, served) for _ in range(2)]
            for server in servers:
                server.launch()  # they start (import) while the database is migrated and seeded
            run_cli(servers[0].ini, "initdb", "--demo", env=env)
            name, https = "PostgreSQL, 2 processes", True
            schedule = [
                (seconds * RELAY_CUT_AT, outage("database connection cut", relay.stop, relay.start, profile.outage_seconds)),
                (seconds * RESTART_AT, outage("PostgreSQL restarted", pg.stop, pg.start, profile.outage_seconds)),
                (seconds * KILL_AT, kill("one waitress process killed (SIGKILL)", servers[1], 1)),
            ]
        plan = Plan.build(target, profile, [s.url for s in servers], https, folder / "journal.json")
        say(f"{target}: creating {len(plan.all_accounts())} accounts")
        seed_accounts(database_url, plan)
        plan.save(folder / "plan.json")
        for server in servers:
            server.wait_ready()
        say(f"{target}: {sum(plan.users.values())} users for {seconds} s on {', '.join(plan.servers)}")
        locust = run_locust(folder / "plan.json", plan, seconds, folder)
        injector = FaultInjector(schedule)
        injector.start()
        locust.wait(timeout=seconds + 180)
        injector.join(timeout=120)
        if injector.error is not None:
            raise RuntimeError(f"fault injection failed: {injector.error!r}")
        journal_path = folder / "journal.json"
        if not journal_path.exists():
            raise RuntimeError(f"Locust wrote no journal: {(folder / 'locust.log').read_text()[-3000:]}")
        journal = json.loads(journal_path.read_text())
        survivor = next(s for s in servers if s.killed_at is None)
        say(f"{target}: checking every acknowledged write again, and the database's counts")
        after = after_the_run(plan, journal, survivor.url, database_url)
        verdict = judge(journal, injector.faults, after)
        if target == "postgresql":
            log = pg.logfile.read_text(errors="replace")
            (folder / "postgresql.log").write_text(log)
            # Not an invariant (each deadlock aborts one transaction, which pyramid_retry runs
            # again), but the lock order of docs/concurrency.md should leave none.
            verdict.notes.append(
                f"PostgreSQL's log: {log.count('deadlock detected')} deadlock(s) detected, "
                f"{log.count('could not serialize access')} serialization failure(s)"
            )
        (folder / "faults.json").write_text(json.dumps([vars(f) for f in injector.faults], indent=1))
        return TargetResult(name, seconds, sum(plan.users.values()), journal, verdict)
    finally:
        if locust is not None and locust.poll() is None:
            locust.kill()
            locust.wait(timeout=30)
        for server in servers:
            server.stop()
        for cleanup in reversed(cleanups):
            cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--target", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--out", type=Path, help="where logs, Locust's CSV/HTML and the journals go")
    args = parser.parse_args(argv)
    targets = ["sqlite", "postgresql"] if args.target == "both" else [args.target]
    if "postgresql" in targets and find_bindir() is None:
        print("PostgreSQL's initdb/pg_ctl not found: install postgresql (Debian: postgresql-15)", file=sys.stderr)
        return 2
    out = (args.out or Path(tempfile.mkdtemp(prefix="appserver-loadtest-"))).resolve()
    profile = PROFILES[args.profile]
    results = [run_target(target, profile, out / target) for target in targets]
    print(render(results))
    print(f"logs, Locust's CSV and HTML reports: {out}")
    return 1 if any(r.verdict.violated for r in results) else 0
