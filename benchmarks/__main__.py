"""``python -m benchmarks [side-by-side|sweep|scale|django]`` (``make benchmark`` runs
side-by-side; ``make benchmark-django`` the Django comparison)."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import appserver  # noqa: F401  (first: it silences pyramid's pkg_resources warning)

from . import side_by_side
from .servers import Setup

RECOMMENDED_PROCESSES = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks", description=__doc__)
    parser.add_argument("mode", nargs="?", default="side-by-side", choices=["side-by-side", "sweep", "scale", "django"])
    # Five short rounds rather than three long ones, in about the same time: a median of five
    # rejects two noisy moments of the shared machine, a median of three only one.
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("BENCHMARK_ROUNDS", "5")))
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("BENCHMARK_SECONDS", "2")))
    parser.add_argument("--processes", type=int, default=RECOMMENDED_PROCESSES)
    parser.add_argument("--threads", type=int, default=None, help="default: production.ini's")
    parser.add_argument("--switch-interval", type=float, default=None)
    args = parser.parse_args(argv)
    setup = Setup(args.threads or side_by_side.production_threads(), args.processes, args.switch_interval)
    with tempfile.TemporaryDirectory() as folder:
        if args.mode == "side-by-side":
            print(f"round-robin: {args.rounds} rounds of {args.seconds:g} s per request and connection count; medians\n")
            for name, url in side_by_side.databases(folder):
                results = side_by_side.run(url, setup, rounds=args.rounds, seconds=args.seconds)
                print("\n".join(side_by_side.report(name, setup, results)), flush=True)
        elif args.mode == "sweep":
            from . import sweep

            sweep.main(folder, rounds=args.rounds, seconds=args.seconds)
        elif args.mode == "django":
            from . import django_side

            return django_side.main(folder, setup, rounds=args.rounds, seconds=args.seconds)
        else:
            from . import scale

            return scale.main(rounds=args.rounds, seconds=args.seconds, processes=args.processes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
