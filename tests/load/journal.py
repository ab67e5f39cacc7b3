"""What the load users saw, response by response: the raw material of the invariants.

The Locust process fills one :class:`Journal` and writes it as JSON when the run stops; the
orchestrator (``tests.load.run``) judges it afterwards, when it knows the fault windows and
can look into the database (``tests.load.verdict``). Checks that need only the response
itself (who it names, an anonymous answer to credentials) are made here, on every response.
"""
from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Invariants judged on the spot, with the examples kept for the report.
WRONG_USER = "responses naming another user (X-AUSERNAME)"
ANONYMOUS_REST = "anonymous answers under /rest to credentials"
MAX_EXAMPLES = 5


@dataclass
class Journal:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    violations: dict[str, int] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    #: every 5xx: {t0, t1, status, retry_after, server, kind}
    server_errors: list[dict[str, Any]] = field(default_factory=list)
    #: answers per server and wall-clock second (who served whom, before and after a kill)
    answered: dict[int, Counter] = field(default_factory=lambda: defaultdict(Counter))
    #: every request that got no HTTP answer: {t0, t1, server, kind, error}
    connection_errors: list[dict[str, Any]] = field(default_factory=list)
    #: a client that held credentials it believed live was treated as logged out:
    #: {user, issued (when the request that set its cookie was sent), t1, kind, status,
    #: in_doubt}; judged against ``revocations``
    refusals: list[dict[str, Any]] = field(default_factory=list)
    #: administrator "log out everywhere": {user, t0, t1 (None: not acknowledged)}
    revocations: list[dict[str, Any]] = field(default_factory=list)
    #: acknowledged writes whose effect is checked again after the run:
    #: {id, kind, user, dead_cookies: [Cookie header values]}
    writes: list[dict[str, Any]] = field(default_factory=list)
    #: per managed account: {user, password (the one that must work), previous (must not),
    #: landed (password changes that took effect), in_doubt}
    passwords: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: lost writes seen at once (ids of ``writes``), and half-written states
    lost_writes: set[str] = field(default_factory=set)
    half_written: list[str] = field(default_factory=list)
    #: per victim: how many attempts the server answered "password checked and wrong"
    victim_checks: dict[str, int] = field(default_factory=Counter)
    #: a right guess that logged in while the victim should have been locked
    lockout_breaches: list[str] = field(default_factory=list)
    #: session cookies per user and when they were issued (for the administrator's revoke)
    issued: dict[str, list[tuple[str, float]]] = field(default_factory=lambda: defaultdict(list))
    _ids: int = 0

    # -- every response ----------------------------------------------------------------------

    def record(
        self,
        kind: str,
        path: str,
        status: int,
        headers: Any,
        t0: float,
        t1: float,
        server: int,
        *,
        as_user: str | None,
        presented: bool,
    ) -> list[str]:
        """Note one response; returns the invariants it broke (empty: none)."""
        self.latencies[kind].append((t1 - t0) * 1000)
        self.statuses[kind][status] += 1
        self.answered[server][int(t1)] += 1
        if status >= 500:
            self.server_errors.append({
                "t0": t0, "t1": t1, "status": status, "server": server, "kind": kind,
                "retry_after": bool(headers.get("Retry-After")),
            })
        problems = []
        named = headers.get("X-AUSERNAME")
        if named is not None and named.casefold() != "anonymous":
            if as_user is None or named.casefold() != as_user.casefold():
                problems.append(self.violate(WRONG_USER, f"{kind}: {named!r} answered for {as_user!r}"))
        rest = path.startswith("/rest/") and not path.startswith("/rest/auth/")
        if rest and presented and 200 <= status < 300 and (named or "anonymous").casefold() == "anonymous":
            problems.append(self.violate(ANONYMOUS_REST, f"{kind}: {status} anonymous for {as_user!r}"))
        return problems

    def connection_error(self, kind: str, t0: float, t1: float, server: int, error: str) -> None:
        self.connection_errors.append({"t0": t0, "t1": t1, "server": server, "kind": kind, "error": error[:200]})

    def violate(self, invariant: str, example: str) -> str:
        self.violations[invariant] += 1
        if len(self.examples[invariant]) < MAX_EXAMPLES:
            self.examples[invariant].append(example)
        return f"{invariant}: {example}"

    # -- sessions, writes --------------------------------------------------------------------

    def new_id(self, kind: str) -> str:
        self._ids += 1
        return f"{kind}-{self._ids}"

    def session_issued(self, user: str, cookie: str, when: float) -> None:
        self.issued[user].append((cookie, when))

    def sessions_before(self, user: str, moment: float) -> list[str]:
        return [cookie for cookie, when in self.issued.get(user, []) if when < moment]

    def refused(self, user: str, issued: float, t1: float, kind: str, status: int, in_doubt: bool) -> None:
        self.refusals.append(
            {"user": user, "issued": issued, "t1": t1, "kind": kind, "status": status, "in_doubt": in_doubt}
        )

    def acknowledged(self, kind: str, user: str, dead_cookies: list[str]) -> str:
        write_id = self.new_id(kind)
        self.writes.append({"id": write_id, "kind": kind, "user": user, "dead_cookies": dead_cookies})
        return write_id

    def lost(self, write_id: str, example: str) -> None:
        if write_id not in self.lost_writes:
            self.lost_writes.add(write_id)
            if len(self.examples["lost"]) < MAX_EXAMPLES:
                self.examples["lost"].append(example)

    # -- output ------------------------------------------------------------------------------

    def dump(self, path: Path) -> None:
        data = {
            "written_at": time.time(),
            "latencies": self.latencies,
            "statuses": {kind: dict(counts) for kind, counts in self.statuses.items()},
            "violations": dict(self.violations),
            "examples": self.examples,
            "server_errors": self.server_errors,
            "connection_errors": self.connection_errors,
            "answered": {server: dict(seconds) for server, seconds in self.answered.items()},
            "refusals": self.refusals,
            "revocations": self.revocations,
            "writes": self.writes,
            "passwords": self.passwords,
            "lost_writes": sorted(self.lost_writes),
            "half_written": self.half_written,
            "victim_checks": dict(self.victim_checks),
            "lockout_breaches": self.lockout_breaches,
        }
        path.write_text(json.dumps(data, default=list))
