"""``python -m benchmarks sweep``: waitress threads x processes x ``sys.setswitchinterval``
for the cookie request, at 1, 8 and 32 connections: the data behind production.ini's
threads and the recommended number of processes (docs/performance.md).

The machine is shared, so set-ups are compared in groups served at the same time, driven
round-robin, each group with the same reference set-up (1 process x 8 threads, Python's
default switch interval: what production.ini had): every throughput is a multiple of the
reference's at the same connection count, measured in the same rounds.
"""
from __future__ import annotations

import os

from . import servers
from .data import log_in, prepare_database
from .load import Result
from .servers import Setup
from .side_by_side import CONNECTIONS

THREADS = (1, 2, 4, 8)
PROCESSES = (1, 2, 3)
SWITCH_INTERVALS = (0.0005, 0.005, 0.02)  # Python's default is 0.005
REFERENCE = Setup(8, 1, None)
PATH = "/rest/api/2/myself"


def measure_group(url: str, setups: list[Setup], *, rounds: int, seconds: float) -> dict[tuple[Setup, int], Result]:
    targets = {}
    try:
        for setup in setups:
            targets[setup] = servers.start("app", setup, database_url=url)
        cookie = log_in(targets[setups[0]].url).cookie_header
        for target in targets.values():
            servers.warm(target, PATH, cookie)
        runs = {setup: (target, PATH, cookie) for setup, target in targets.items()}
        return servers.round_robin(runs, CONNECTIONS, rounds=rounds, seconds=seconds)
    finally:
        for target in targets.values():
            target.stop()


def main(folder: str, *, rounds: int, seconds: float) -> None:
    url = os.environ.get("BENCHMARK_DATABASE_URL") or f"sqlite:///{folder}/sweep.sqlite"
    prepare_database(url)
    print(f"## cookie GET myself, database {url.split(':')[0]}: {rounds} round(s) of {seconds:g} s, medians\n")
    print(f"x ref: throughput as a multiple of the reference set-up ({REFERENCE}) at the same connection count,")
    print("measured in the same rounds; growth: throughput at 8 and 32 connections / at 1; p99 in ms\n")
    print("| processes | threads | switch interval | x ref 1 / 8 / 32 conn | growth 8 / 32 | p99 1 / 8 / 32 |")
    print("|---|---|---|---|---|---|", flush=True)
    for processes in PROCESSES:
        for interval in SWITCH_INTERVALS:
            group = [REFERENCE] + [
                s for s in (Setup(t, processes, interval) for t in THREADS)
                if (s.threads, s.processes, s.switch_interval or 0.005) != (8, 1, 0.005)
            ]
            results = measure_group(url, group, rounds=rounds, seconds=seconds)
            for setup in group[1:]:
                rates = [results[setup, c].requests_per_second for c in CONNECTIONS]
                ref = [results[REFERENCE, c].requests_per_second for c in CONNECTIONS]
                print(f"| {setup.processes} | {setup.threads} | {setup.switch_interval * 1000:g} ms | "
                      + " / ".join(f"{r / f:.2f}" for r, f in zip(rates, ref))
                      + " | " + " / ".join(f"{r / rates[0]:.2f}" for r in rates[1:])
                      + " | " + " / ".join(f"{results[setup, c].p99 * 1000:.0f}" for c in CONNECTIONS) + " |")
            rates = [results[REFERENCE, c].requests_per_second for c in CONNECTIONS]
            print(f"| (reference in this group) | 8 | 5 ms | 1.00 | "
                  + " / ".join(f"{r / rates[0]:.2f}" for r in rates[1:])
                  + " | " + " / ".join(f"{results[REFERENCE, c].p99 * 1000:.0f}" for c in CONNECTIONS) + " |",
                  flush=True)
