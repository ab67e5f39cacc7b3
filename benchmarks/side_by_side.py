"""The side-by-side run: the project and its anchors, round-robin, at 1, 8 and 32 connections."""
from __future__ import annotations

import configparser
import os
from dataclasses import dataclass

import requests

from . import servers
from .data import Credentials, log_in, prepare_database
from .load import Result
from .servers import ROOT, Setup

CONNECTIONS = (1, 8, 32)


@dataclass(frozen=True)
class Case:
    label: str
    target: str  # "bare-json", "bare-cookie" or "app"
    path: str
    credential: str  # "", "cookie" or "basic"
    user: str  # the X-AUSERNAME the app must answer with ("" for anchors)


CASES = (
    Case("bare JSON view (serverInfo's body)", "bare-json", "/rest/api/2/serverInfo", "", ""),
    Case("bare cookie view (hash + 1 SELECT)", "bare-cookie", "/rest/api/2/myself", "cookie", ""),
    Case("anonymous GET serverInfo", "app", "/rest/api/2/serverInfo", "", "anonymous"),
    Case("cookie GET myself", "app", "/rest/api/2/myself", "cookie", "fred"),
    Case("Basic GET myself", "app", "/rest/api/2/myself", "basic", "fred"),
)

#: (label, numerator case, denominator case, goal): the issue's table. Its goals are the
#: per-request cost, "measured from outside, one connection at a time": they are judged at
#: one connection. At 8 and 32 connections every process is busy and a ratio measures the
#: share of two saturated cores instead; it is printed beside them, not judged.
RATIOS = (
    ("cookie myself / bare cookie view", "cookie GET myself", "bare cookie view (hash + 1 SELECT)", 0.8),
    ("anonymous serverInfo / bare JSON view", "anonymous GET serverInfo", "bare JSON view (serverInfo's body)", 0.8),
    ("Basic myself / cookie myself", "Basic GET myself", "cookie GET myself", 0.5),
)
P99_GOAL = 0.050  # seconds, for the cookie request at every connection count


def production_threads() -> int:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "production.ini")
    return int(parser["server:main"].get("threads", "4"))


def headers_for(case: Case, credentials: Credentials) -> dict[str, str]:
    if case.credential == "cookie":
        return credentials.cookie_header
    if case.credential == "basic":
        return credentials.basic_header
    return {}


def check(case: Case, base: str, headers: dict[str, str]) -> None:
    """Before measuring: the request answers 200 as the right user (no measuring of 401s)."""
    response = requests.get(base + case.path, headers=headers, timeout=30)
    if response.status_code != 200:
        raise RuntimeError(f"{case.label}: {response.status_code} {response.text[:200]}")
    if case.user and response.headers.get("X-AUSERNAME") != case.user:
        raise RuntimeError(f"{case.label}: answered as {response.headers.get('X-AUSERNAME')}")


Results = dict[tuple[str, int], Result]


def run(database_url: str, setup: Setup, *, rounds: int, seconds: float,
        connections: tuple[int, ...] = CONNECTIONS) -> Results:
    prepare_database(database_url)
    targets = {}
    try:
        for kind in ("bare-json", "bare-cookie", "app"):
            targets[kind] = servers.start(kind, setup, database_url=database_url)
        credentials = log_in(targets["app"].url)
        for case in CASES:
            check(case, targets[case.target].url, headers_for(case, credentials))
        for case in CASES:
            servers.warm(targets[case.target], case.path, headers_for(case, credentials))
        runs = {case.label: (targets[case.target], case.path, headers_for(case, credentials)) for case in CASES}
        return servers.round_robin(runs, connections, rounds=rounds, seconds=seconds)
    finally:
        for target in targets.values():
            target.stop()


def report(name: str, setup: Setup, results: Results, connections: tuple[int, ...] = CONNECTIONS) -> list[str]:
    lines = [f"## {name}: {setup}", ""]
    lines.append("| request | " + " | ".join(f"{c} conn: req/s, p50, p99" for c in connections) + " |")
    lines.append("|---|" + "---|" * len(connections))
    for case in CASES:
        cells = []
        for count in connections:
            r = results[case.label, count]
            cells.append(f"{r.requests_per_second:.0f}, {r.p50 * 1000:.1f} ms, {r.p99 * 1000:.1f} ms")
        lines.append(f"| {case.label} | " + " | ".join(cells) + " |")
    lines += ["", "| ratio | " + " | ".join(f"{c} conn" for c in connections) + f" | goal at {connections[0]} conn | met |",
              "|---|" + "---|" * (len(connections) + 2)]
    for label, top, bottom, goal in RATIOS:
        values = [results[top, c].requests_per_second / results[bottom, c].requests_per_second for c in connections]
        met = values[0] >= goal
        lines.append(f"| {label} | " + " | ".join(f"{v:.2f}x" for v in values) + f" | >= {goal}x | {'yes' if met else 'NO'} |")
    lines += ["", "| request: throughput / its 1-connection throughput | "
              + " | ".join(f"{c} conn" for c in connections[1:]) + " | goal | met |",
              "|---|" + "---|" * (len(connections) + 1)]
    for case in CASES:
        base = results[case.label, connections[0]].requests_per_second
        values = [results[case.label, c].requests_per_second / base for c in connections[1:]]
        met = all(v >= 1.0 for v in values)
        lines.append(f"| {case.label} | " + " | ".join(f"{v:.2f}x" for v in values) + f" | >= 1x | {'yes' if met else 'NO'} |")
    p99s = [results["cookie GET myself", c].p99 for c in connections]
    met = all(p <= P99_GOAL for p in p99s)
    lines.append("")
    lines.append("cookie GET myself p99: " + ", ".join(f"{c} conn {p * 1000:.1f} ms" for c, p in zip(connections, p99s))
                 + f" (goal <= {P99_GOAL * 1000:.0f} ms: {'met' if met else 'NOT met'})")
    lines.append("")
    return lines


def databases(folder: str) -> list[tuple[str, str]]:
    found = [("SQLite", f"sqlite:///{folder}/bench.sqlite")]
    if os.environ.get("BENCHMARK_DATABASE_URL"):
        found.append(("PostgreSQL", os.environ["BENCHMARK_DATABASE_URL"]))
    return found
