"""``python -m benchmarks sweep``: waitress threads x processes x ``sys.setswitchinterval``
for the cookie request, at 1, 8 and 32 connections: the data behind production.ini's
threads and the recommended number of processes (docs/performance.md)."""
from __future__ import annotations

import itertools
import os
from collections import defaultdict

from . import servers
from .data import log_in, prepare_database
from .load import Result, median_result, wrk
from .servers import Setup
from .side_by_side import CONNECTIONS

THREADS = (1, 2, 4, 8)
PROCESSES = (1, 2, 3)
SWITCH_INTERVALS = (0.0005, 0.005, 0.02)  # Python's default is 0.005
PATH = "/rest/api/2/myself"


def main(folder: str, *, rounds: int, seconds: float) -> None:
    url = os.environ.get("BENCHMARK_DATABASE_URL") or f"sqlite:///{folder}/sweep.sqlite"
    prepare_database(url)
    setups = [Setup(t, p, s) for p, t, s in itertools.product(PROCESSES, THREADS, SWITCH_INTERVALS)]
    runs: dict[tuple[Setup, int], list[Result]] = defaultdict(list)
    credentials = None
    for _ in range(rounds):
        for setup in setups:
            target = servers.start("app", setup, database_url=url)
            try:
                credentials = credentials or log_in(target.url)
                wrk(target.url + PATH, connections=1, seconds=1, headers=credentials.cookie_header)
                for count in CONNECTIONS:
                    runs[setup, count].append(
                        wrk(target.url + PATH, connections=count, seconds=seconds, headers=credentials.cookie_header)
                    )
            finally:
                target.stop()
            print(f"measured {setup}", flush=True)
    results = {key: median_result(values) for key, values in runs.items()}
    reference = sorted(results[s, 1].requests_per_second for s in setups)[len(setups) // 2]
    print(f"\n## cookie GET myself, database {url.split(':')[0]}: {rounds} round(s) of {seconds:g} s\n")
    print("throughput as a multiple of the median 1-connection throughput of all set-ups; p99 in ms\n")
    print("| processes | threads | switch interval | 1 conn | 8 conn | 32 conn | p99 1 / 8 / 32 |")
    print("|---|---|---|---|---|---|---|")
    for setup in setups:
        cells = [f"{results[setup, c].requests_per_second / reference:.2f}" for c in CONNECTIONS]
        p99 = " / ".join(f"{results[setup, c].p99 * 1000:.0f}" for c in CONNECTIONS)
        print(f"| {setup.processes} | {setup.threads} | {setup.switch_interval * 1000:g} ms | "
              + " | ".join(cells) + f" | {p99} |")
