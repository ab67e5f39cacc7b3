"""Judging a run: the journal of the Locust process, the fault windows, the checks made
after the run, and the database's own counts become one count per invariant (0: kept).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .journal import ANONYMOUS_REST, WRONG_USER

#: After the database returns, full service within this many seconds (the issue's promise).
RECOVERY_SECONDS = 5.0

SERVER_ERRORS = "5xx outside an outage (or 503 without Retry-After, or > 5 s after it)"
LOST_WRITES = "lost writes (acknowledged logout, revoke, password change not in effect)"
LOCKOUT = "lock-out exceeded (password checks beyond max_failures, logins while locked)"
UNCOUNTED = "failed logins not counted in the database"
REFUSED = "valid credentials refused (sessions lost, unexplained 401)"
HALF_WRITTEN = "half-written states (a change partly in effect, audit trail disagrees)"
NO_ANSWER = "requests a live server left without an answer"

INVARIANTS = [SERVER_ERRORS, WRONG_USER, ANONYMOUS_REST, LOST_WRITES, LOCKOUT, UNCOUNTED, REFUSED,
              HALF_WRITTEN, NO_ANSWER]


@dataclass
class Fault:
    name: str
    start: float
    end: float  # for a kill: the moment of the kill
    outage: bool  # the database was away: 503 + Retry-After is the right answer meanwhile
    server: int | None = None  # the killed process

    def recovery(self, server_errors: list[dict[str, Any]], until: float) -> float:
        """Seconds from the database's return to the last 5xx answered before ``until``
        (the next fault): 0 when none came after the return."""
        late = [e["t1"] - self.end for e in server_errors if self.start <= e["t1"] < until]
        return max([0.0, *late])


@dataclass
class Verdict:
    counts: dict[str, int] = field(default_factory=lambda: {name: 0 for name in INVARIANTS})
    examples: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, invariant: str, count: int, examples: list[str] = ()) -> None:
        self.counts[invariant] = self.counts.get(invariant, 0) + count
        if count:
            self.examples.setdefault(invariant, []).extend(list(examples)[:5])

    @property
    def violated(self) -> bool:
        return any(self.counts.values())


def allowed_server_error(error: dict[str, Any], faults: list[Fault]) -> bool:
    """A 503 with Retry-After while the database is away (or within 5 s of its return)."""
    if error["status"] != 503 or not error["retry_after"]:
        return False
    return any(
        f.outage and error["t0"] <= f.end + RECOVERY_SECONDS and error["t1"] >= f.start for f in faults
    )


def allowed_no_answer(error: dict[str, Any], faults: list[Fault]) -> bool:
    """Requests in flight to (or sent to) a process killed with SIGKILL."""
    return any(f.server == error["server"] and error["t1"] >= f.start for f in faults if f.server is not None)


def explained_refusal(refusal: dict[str, Any], revocations: list[dict[str, Any]]) -> bool:
    """A client was logged out because an administrator logged its user out everywhere
    (begun before the refusal, not finished before the session was issued), or because one
    of its own requests died without an answer (its cookie is then in doubt)."""
    if refusal["in_doubt"]:
        return True
    return any(
        r["user"] == refusal["user"]
        and r["t0"] <= refusal["t1"]
        and (r["t1"] is None or r["t1"] >= refusal["issued"])
        for r in revocations
    )


def password_checks(victim: str, max_failures: int, *, database: int, audited: int, seen: int) -> tuple[list[str], list[str]]:
    """A victim's passwords checked: the most that any witness saw -- the database's failure
    count, the audit trail's failed logins, the attackers' "wrong password" answers. Returns
    (lock-out exceeded, failures not counted), each a list of one message or empty."""
    checks = max(database, audited, seen)
    excess = [f"{victim}: {checks} passwords checked, at most {max_failures} allowed "
              f"(database {database}, audit {audited}, clients {seen})"] if checks > max_failures else []
    uncounted = [f"{victim}: clients saw {seen} failures, the database counted {database}"] if seen > database else []
    return excess, uncounted


def audited_changes(name: str, state: dict[str, Any], audited: int) -> list[str]:
    """The audit trail lists every password change that took effect and no other (a change
    answered with 5xx or not at all may or may not have)."""
    if state["landed"] <= audited <= state["landed"] + state["in_doubt"]:
        return []
    return [f"{name}: the audit trail has {audited} password changes, {state['landed']} took effect"
            f" ({state['in_doubt']} unacknowledged)"]


def judge(journal: dict[str, Any], faults: list[Fault], after: dict[str, Any]) -> Verdict:
    """``after``: the orchestrator's checks after the run (lost/half-written examples, the
    database's failure and audit counts)."""
    verdict = Verdict()
    bad = [e for e in journal["server_errors"] if not allowed_server_error(e, faults)]
    verdict.add(SERVER_ERRORS, len(bad), [f"{e['status']} {e['kind']} (server {e['server']})" for e in bad])
    for invariant in (WRONG_USER, ANONYMOUS_REST):
        verdict.add(invariant, journal["violations"].get(invariant, 0), journal["examples"].get(invariant, []))
    for other, count in journal["violations"].items():
        if other not in (WRONG_USER, ANONYMOUS_REST):
            verdict.add(other, count, journal["examples"].get(other, []))

    lost = set(journal["lost_writes"]) | set(after["lost_writes"])
    verdict.add(LOST_WRITES, len(lost), journal["examples"].get("lost", []) + after["lost_examples"])

    lockout = journal["lockout_breaches"] + after["lockout_excess"]
    verdict.add(LOCKOUT, len(lockout), lockout)
    verdict.add(UNCOUNTED, len(after["uncounted"]), after["uncounted"])

    unexplained = [r for r in journal["refusals"] if not explained_refusal(r, journal["revocations"])]
    verdict.add(REFUSED, len(unexplained), [f"{r['kind']}: {r['status']} for {r['user']}" for r in unexplained])

    half = journal["half_written"] + after["half_written"]
    verdict.add(HALF_WRITTEN, len(half), half)

    no_answer = [e for e in journal["connection_errors"] if not allowed_no_answer(e, faults)]
    verdict.add(NO_ANSWER, len(no_answer), [f"{e['kind']} (server {e['server']}): {e['error']}" for e in no_answer])

    allowed_503 = len(journal["server_errors"]) - len(bad)
    cut = len(journal["connection_errors"]) - len(no_answer)
    for fault, following in zip(faults, [*faults[1:], None]):
        if fault.outage:
            until = following.start if following else fault.end + 60
            verdict.notes.append(
                f"{fault.name}: {fault.end - fault.start:.1f} s away, last 5xx "
                f"{fault.recovery(journal['server_errors'], until):.1f} s after its return"
            )
        else:
            after = {int(server): sum(n for second, n in seconds.items() if int(second) > fault.start)
                     for server, seconds in journal.get("answered", {}).items()}
            verdict.notes.append(
                f"{fault.name}: afterwards {after.get(fault.server, 0)} answers from it, "
                f"{sum(n for server, n in after.items() if server != fault.server)} from the other process"
            )
    if faults:
        verdict.notes.append(f"allowed: {allowed_503} x 503 + Retry-After during outages, "
                             f"{cut} requests cut by the SIGKILL")
    verdict.notes.append(
        f"{len(journal['refusals']) - len(unexplained)} logouts by the administrator noticed, "
        f"{len(journal['writes'])} writes checked after the run"
    )
    if after.get("locked"):
        verdict.notes.append(
            "locked out by the hourly cap on failed logins (the run's checks of old passwords), their "
            f"passwords checked against the stored hash: {', '.join(after['locked'])}"
        )
    return verdict
