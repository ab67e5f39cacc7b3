"""The one table of a load run: requests and p50/p99 latency per kind of request, then every
invariant with its count, one column group per target."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .verdict import INVARIANTS, Verdict


@dataclass
class TargetResult:
    name: str  # column heading, e.g. "SQLite, 1 process"
    seconds: int
    users: int
    journal: dict[str, Any]
    verdict: Verdict


def percentile(values: list[float], fraction: float) -> float:
    """Nearest rank: the smallest value with at least ``fraction`` of the values at or below it."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered), max(1, math.ceil(fraction * len(ordered)))) - 1]


def render(results: list[TargetResult]) -> str:
    kinds = sorted({kind for r in results for kind in r.journal["latencies"]})
    invariants = list(INVARIANTS) + sorted(
        {name for r in results for name in r.verdict.counts if name not in INVARIANTS}
    )
    width = max([len("kind of request"), *map(len, kinds), *map(len, invariants)]) + 2
    column = 27
    lines = []
    lines.append("".join(["".ljust(width), *(f"| {r.name}".ljust(column) for r in results)]))
    lines.append("".join(["".ljust(width),
                          *(f"| {r.seconds} s, {r.users} users".ljust(column) for r in results)]))
    lines.append("".join(["kind of request".ljust(width),
                          *("| requests  p50 ms  p99 ms".ljust(column) for _ in results)]))
    rule = "-" * (width + column * len(results))
    lines.append(rule)
    totals = [0] * len(results)
    for kind in kinds:
        cells = []
        for i, r in enumerate(results):
            values = r.journal["latencies"].get(kind, [])
            totals[i] += len(values)
            cells.append(
                f"| {len(values):>8} {percentile(values, 0.50):>7.1f} {percentile(values, 0.99):>7.1f}".ljust(column)
                if values else "|".ljust(column)
            )
        lines.append(kind.ljust(width) + "".join(cells))
    lines.append("all requests".ljust(width) + "".join(f"| {t:>8}".ljust(column) for t in totals))
    lines.append(rule)
    lines.append("invariant (must be 0)".ljust(width) + "".join("| count".ljust(column) for _ in results))
    for name in invariants:
        lines.append(name.ljust(width) + "".join(f"| {r.verdict.counts.get(name, 0):>8}".ljust(column) for r in results))
    lines.append(rule)
    for r in results:
        for note in r.verdict.notes:
            lines.append(f"{r.name}: {note}")
        for name, examples in r.verdict.examples.items():
            for example in examples[:3]:
                lines.append(f"{r.name}: VIOLATED {name}: {example}")
    return "\n".join(lines)
