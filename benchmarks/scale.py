"""``python -m benchmarks scale`` (PostgreSQL, ``BENCHMARK_DATABASE_URL``): the cookie
request with 10^6 sessions, 10^5 users and 10^6 audit events against the 10^3 case, both
served side by side; purge-sessions of 10^6 expired rows while logins go on; and the memory
of a login burst."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from tests.support import sibling_database

from . import bulk, servers
from .data import PASSWORD, USERNAME, log_in, prepare_database
from .load import wrk
from .servers import ROOT, Setup
from .side_by_side import production_threads

PATH = "/rest/api/2/myself"
SMALL = {"users": 1_000, "sessions": 1_000, "events": 1_000}
LARGE = {"users": 100_000, "sessions": 1_000_000, "events": 1_000_000}
COST_GOAL = 1.2
MIB = 1024


def main(*, rounds: int, seconds: float, processes: int) -> int:
    url = os.environ.get("BENCHMARK_DATABASE_URL")
    if not url or not url.startswith("postgresql"):
        print("the scale benchmark needs BENCHMARK_DATABASE_URL=postgresql+psycopg://...", file=sys.stderr)
        return 2
    small, large = url, sibling_database(url, "scale")
    setup = Setup(production_threads(), processes)
    print(f"## Scale, PostgreSQL: {setup}\n")
    for name, target_url, sizes in (("10^3", small, SMALL), ("10^6", large, LARGE)):
        prepare_database(target_url)
        started = time.perf_counter()
        bulk.load(target_url, **sizes)
        print(f"loaded the {name} case ({', '.join(f'{v:,} {k}' for k, v in sizes.items())}) "
              f"in {time.perf_counter() - started:.0f} s", flush=True)
    cookie_cost(small, large, setup, rounds=rounds, seconds=seconds)
    purge_during_logins(large, setup)
    login_burst_memory(large, Setup(setup.threads, 1), seconds=max(seconds, 5))
    return 0


def cookie_cost(small: str, large: str, setup: Setup, *, rounds: int, seconds: float) -> None:
    targets = {}
    try:
        for size, url in (("10^3", small), ("10^6", large)):
            targets["app", size] = servers.start("app", setup, database_url=url)
            targets["bare-cookie", size] = servers.start("bare-cookie", setup, database_url=url)
        cookies = {size: log_in(targets["app", size].url).cookie_header for size in ("10^3", "10^6")}
        runs = {key: (target, PATH, cookies[key[1]]) for key, target in targets.items()}
        results = servers.round_robin(runs, (1, 8), rounds=rounds, seconds=seconds)
    finally:
        for target in targets.values():
            target.stop()
    print("\n| request | connections | 10^3: req/s, p99 | 10^6: req/s, p99 | cost at 10^6 / cost at 10^3 | goal |")
    print("|---|---|---|---|---|---|")
    for kind, label in (("app", "cookie GET myself"), ("bare-cookie", "bare cookie view")):
        for count in (1, 8):
            a, b = results[(kind, "10^3"), count], results[(kind, "10^6"), count]
            ratio = a.requests_per_second / b.requests_per_second
            goal = f"<= {COST_GOAL}x: {'met' if ratio <= COST_GOAL else 'NOT met'}" if kind == "app" else "(anchor)"
            print(f"| {label} | {count} | {a.requests_per_second:.0f}, {a.p99 * 1000:.1f} ms | "
                  f"{b.requests_per_second:.0f}, {b.p99 * 1000:.1f} ms | {ratio:.2f}x | {goal} |")
    print(flush=True)


def _environment(url: str) -> dict[str, str]:
    return {**os.environ, **servers.production_environment(url), "PYTHONWARNINGS": "ignore"}


def _login_latencies(base: str, stop: threading.Event, into: list[float]) -> None:
    with requests.Session() as client:
        while not stop.is_set():
            started = time.perf_counter()
            response = client.post(base + "/rest/auth/1/session",
                                   json={"username": USERNAME, "password": PASSWORD}, timeout=60)
            response.raise_for_status()
            into.append(time.perf_counter() - started)
            client.cookies.clear()


def _summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    return (f"{len(ordered)} logins, p50 {statistics.median(ordered) * 1000:.0f} ms, "
            f"max {ordered[-1] * 1000:.0f} ms")


def purge_during_logins(url: str, setup: Setup) -> None:
    """Logins, one after another, before and during ``appserver production.ini purge-sessions``."""
    target = servers.start("app", setup, database_url=url)
    try:
        expired = bulk.count(url, "sessions")
        before: list[float] = []
        stop = threading.Event()
        worker = threading.Thread(target=_login_latencies, args=(target.url, stop, before))
        worker.start()
        time.sleep(5)  # the baseline: logins with nothing else going on
        stop.set()
        worker.join()
        during: list[float] = []
        stop = threading.Event()
        worker = threading.Thread(target=_login_latencies, args=(target.url, stop, during))
        worker.start()
        started = time.perf_counter()
        purge = subprocess.run(
            [str(Path(sys.executable).parent / "appserver"), str(ROOT / "production.ini"), "purge-sessions"],
            capture_output=True, text=True, env=_environment(url), cwd=ROOT, check=False,
        )
        took = time.perf_counter() - started
        stop.set()
        worker.join()
    finally:
        target.stop()
    if purge.returncode != 0:
        raise RuntimeError(purge.stderr)
    left = bulk.count(url, "sessions")
    print(f"purge-sessions: {expired:,} rows -> {left:,} in {took:.0f} s "
          f"({purge.stdout.splitlines()[0] if purge.stdout else ''})")
    print(f"logins before the purge: {_summary(before)}")
    print(f"logins during the purge: {_summary(during)}\n", flush=True)


#: Each login names a random one of the bulk users, so each one runs argon2 (a password
#: verified before for the same account would come from the credential cache).
LOGIN_SCRIPT = """
request = function()
  local body = string.format('{"username": "bulk%%06d", "password": "%s"}', math.random(0, %d))
  return wrk.format("POST", "/rest/auth/1/session", {["Content-Type"] = "application/json"}, body)
end
"""


def login_burst_memory(url: str, setup: Setup, *, seconds: float) -> None:
    """32 connections logging in at once (as different users) against one process: its peak
    memory grows by at most ``max_concurrent_hashes`` argon2 buffers (19 MiB each), because
    the rest wait."""
    target = servers.start("app", setup, database_url=url)
    try:
        log_in(target.url)  # warm: imports, the pool, one hash
        (pid,) = target.pids
        baseline = servers.resident_memory_kib(pid)
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(LOGIN_SCRIPT % (bulk.PASSWORD, LARGE["users"] - 1))
        try:
            burst = wrk(target.url + "/rest/auth/1/session", connections=32, seconds=seconds, script=script.name)
        finally:
            os.unlink(script.name)
        peak = servers.peak_memory_kib(pid)
    finally:
        target.stop()
    from appserver.settings import SCHEMA

    limit = SCHEMA["appserver.password.max_concurrent_hashes"][2]
    allowance = limit * 19 * MIB
    print(f"login burst, 32 connections, 1 process x {setup.threads} threads: {burst.requests_per_second:.1f} "
          f"logins/s, p99 {burst.p99 * 1000:.0f} ms; resident memory {baseline / MIB:.0f} MiB before, "
          f"peak {peak / MIB:.0f} MiB (+{(peak - baseline) / MIB:.0f} MiB; the limit of {limit} concurrent "
          f"hashes allows +{allowance / MIB:.0f} MiB: {'bounded' if peak - baseline <= allowance + 16 * MIB else 'NOT bounded'})")
