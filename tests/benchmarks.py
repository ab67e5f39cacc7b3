"""Benchmarks: ``make benchmark`` (not part of the test suite; numbers, not pass/fail).

Serves the app with waitress on a loopback port over a fresh SQLite database (or
``BENCHMARK_DATABASE_URL``) and measures, per kind of request, throughput, latency and how
many SQL statements each request costs.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

import requests
from sqlalchemy import event

from appserver.models import get_engine

from .support import migrate, reset_database, start_live_server

REQUESTS = int(os.environ.get("BENCHMARK_REQUESTS", "300"))


def measure(label: str, send, counter: list[int]) -> None:
    send()  # warm up (and log in)
    counter.clear()
    timings = []
    started = time.perf_counter()
    for _ in range(REQUESTS):
        t0 = time.perf_counter()
        response = send()
        timings.append(time.perf_counter() - t0)
        response.raise_for_status()
    elapsed = time.perf_counter() - started
    print(
        f"{label:<44} {REQUESTS / elapsed:8.0f} req/s  median {statistics.median(timings) * 1000:6.2f} ms"
        f"  p95 {sorted(timings)[int(len(timings) * 0.95)] * 1000:6.2f} ms"
        f"  {len(counter) / REQUESTS:4.2f} SQL statements/request"
    )


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        url = os.environ.get("BENCHMARK_DATABASE_URL") or f"sqlite:///{folder}/bench.sqlite"
        engine = get_engine({"sqlalchemy.url": url})
        reset_database(engine)
        migrate(engine)
        engine.dispose()
        server = start_live_server(url)
        statements: list[int] = []
        event.listen(
            server.engine,
            "before_cursor_execute",
            lambda conn, cursor, statement, *rest: statements.append(1)
            if statement.lstrip().split(None, 1)[0].upper() not in {"BEGIN", "SAVEPOINT", "RELEASE"}
            else None,
        )
        try:
            base = server.url
            print(f"{REQUESTS} sequential requests each, database {url.split(':')[0]}, one client\n")
            anonymous = requests.Session()
            measure("anonymous GET serverInfo", lambda: anonymous.get(base + "/rest/api/2/serverInfo"), statements)

            cookie = requests.Session()
            cookie.post(base + "/rest/auth/1/session", json={"username": "fred", "password": "fred-password"})
            measure("session cookie GET myself", lambda: cookie.get(base + "/rest/api/2/myself"), statements)
            measure("session cookie GET / (HTML)", lambda: cookie.get(base + "/"), statements)
            measure(
                "session cookie GET search (50 of 200 issues)",
                lambda: cookie.get(base + "/rest/api/2/search", params={"jql": "project = DEMO"}),
                statements,
            )
            basic = requests.Session()
            basic.auth = ("fred", "fred-password")
            measure("HTTP Basic GET myself (argon2 per request)", lambda: basic.get(base + "/rest/api/2/myself"), statements)
        finally:
            server.stop()
            server.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
