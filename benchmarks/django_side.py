"""``python -m benchmarks django``: the issue's outside row, cookie ``GET myself`` against
Django 5.2 with database sessions and ``login_required`` (benchmarks/django_app.py), on
SQLite and, with ``BENCHMARK_DATABASE_URL``, PostgreSQL. Same waitress set-up, same rounds.

Django is served twice: with persistent connections (``CONN_MAX_AGE = 600``, how a tuned
Django runs) and with Django's default, a connection opened by every request
(``CONN_MAX_AGE = 0``). The issue names neither; both ratios are printed and judged.

Two anchors run beside them, on the project's database: the bare cookie view of the
side-by-side table (one SELECT through SQLAlchemy Core), and the driver cookie view, the same
SELECT on a driver connection each thread keeps, no SQLAlchemy at run time: the floor of a
cookie check by a database lookup in a Pyramid view here. What separates the project from
that floor is what it does per request beyond the lookup, not the database; a per-process
session cache would skip the lookup and let a revoked session through in every other
process until its copy expired (rule 1)."""
from __future__ import annotations

import os
import subprocess

import requests

from . import servers
from .data import log_in, prepare_database
from .servers import ROOT, Setup
from .side_by_side import CONNECTIONS, databases

GOAL = 3.0
BARE = "bare cookie view"
DRIVER = "driver cookie view"
ANCHORS = {BARE: "bare-cookie", DRIVER: "driver-cookie"}
PATH = "/rest/api/2/myself"
#: Label -> server kind (benchmarks/servers.py) of each Django configuration.
DJANGOS = {
    "Django, persistent connections": "django",
    "Django, a connection per request (its default)": "django-per-request",
}


def django_database(name: str, folder: str) -> str:
    if name == "SQLite":
        return f"{folder}/django.sqlite"
    from tests.support import sibling_database

    return sibling_database(os.environ["BENCHMARK_DATABASE_URL"], "django")


def prepare_django(database: str) -> str:
    """Migrate (from scratch) and seed fred; the key of a session he is logged in to."""
    if database.startswith("postgresql"):
        from sqlalchemy import create_engine

        from tests.support import reset_database

        engine = create_engine(database)
        reset_database(engine)
        engine.dispose()
    command = [servers.django_python(), "-m", "benchmarks.django_app", database]
    subprocess.run(command + ["migrate"], check=True, cwd=ROOT)
    return subprocess.run(command + ["seed"], check=True, cwd=ROOT, capture_output=True, text=True).stdout.strip()


def check(base: str, headers: dict[str, str], name: str) -> set[str]:
    """fred's answer is there; its fields."""
    response = requests.get(base + PATH, headers=headers, timeout=30, allow_redirects=False)
    if response.status_code != 200 or response.json().get("name") != "fred":
        raise RuntimeError(f"{name}: {response.status_code} {response.text[:200]}")
    return set(response.json())


def main(folder: str, setup: Setup, *, rounds: int, seconds: float) -> int:
    for name, url in databases(folder):
        prepare_database(url)
        django_db = django_database(name, folder)
        session_key = prepare_django(django_db)
        targets = {}
        try:
            targets["appserver"] = servers.start("app", setup, database_url=url)
            for label, kind in ANCHORS.items():
                targets[label] = servers.start(kind, setup, database_url=url)
            for label, kind in DJANGOS.items():
                targets[label] = servers.start(kind, setup, database_url=django_db)
            cookie = log_in(targets["appserver"].url).cookie_header
            headers = dict.fromkeys(["appserver", *ANCHORS], cookie)
            headers.update(dict.fromkeys(DJANGOS, {"Cookie": f"sessionid={session_key}"}))
            fields = {label: check(target.url, headers[label], label) for label, target in targets.items()}
            for label in DJANGOS:  # the same answer on both sides of the ratio
                if fields[label] != fields["appserver"]:
                    raise RuntimeError(f"{label} answers {sorted(fields[label])}, not {sorted(fields['appserver'])}")
            for label, target in targets.items():
                servers.warm(target, PATH, headers[label])
            runs = {label: (target, PATH, headers[label]) for label, target in targets.items()}
            results = servers.round_robin(runs, CONNECTIONS, rounds=rounds, seconds=seconds)
        finally:
            for target in targets.values():
                target.stop()
        print(f"## {name}: cookie GET {PATH}, {setup}\n")
        print("| | " + " | ".join(f"{c} conn: req/s, p50, p99" for c in CONNECTIONS) + " |")
        print("|---|" + "---|" * len(CONNECTIONS))
        for label in targets:
            cells = [f"{r.requests_per_second:.0f}, {r.p50 * 1000:.1f} ms, {r.p99 * 1000:.1f} ms"
                     for r in (results[label, c] for c in CONNECTIONS)]
            print(f"| {label} | " + " | ".join(cells) + " |")
        print()
        print("| ratio, 1 / 8 / 32 conn | " + " | ".join(DJANGOS) + " |")
        print("|---|" + "---|" * len(DJANGOS))
        for label in ("appserver", *ANCHORS):
            cells = []
            for django in DJANGOS:
                ratios = [results[label, c].requests_per_second / results[django, c].requests_per_second
                          for c in CONNECTIONS]
                cell = " / ".join(f"{r:.2f}x" for r in ratios)
                if label == "appserver":
                    # Judged at one connection, as the side-by-side report judges its ratios.
                    cell += f" (goal >= {GOAL:g}x at 1 conn: {'yes' if ratios[0] >= GOAL else 'NO'})"
                cells.append(cell)
            name = {BARE: f"{BARE} (SQLAlchemy Core)", DRIVER: f"{DRIVER} (the floor of a lookup)"}.get(label, label)
            print(f"| {name} / it | " + " | ".join(cells) + " |")
        print(flush=True)
    return 0
