"""The plan of one load run, written by the orchestrator and read by the Locust users: the
servers, the accounts each kind of user owns, and how many users of each kind run.

Every account belongs to exactly one user (or to the attackers, for victims), so any
response naming someone else is a bug of the server, never of the test.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

PLAN_VARIABLE = "LOADTEST_PLAN"


@dataclass(frozen=True)
class Profile:
    """How long and how many: ``full`` for ``make loadtest``, ``short`` for CI."""

    name: str
    seconds: dict[str, int]  # target -> run time
    users: dict[str, int]  # user class -> count
    victims: int
    burst: int  # concurrent wrong guesses per victim
    outage_seconds: float  # how long the database stays away in each fault


PROFILES = {
    "full": Profile(
        "full",
        seconds={"sqlite": 75, "postgresql": 120},
        users={"Browser": 6, "RestClient": 6, "BasicClient": 3, "Attacker": 2, "Administrator": 1},
        victims=60,
        burst=8,
        outage_seconds=4.0,
    ),
    "short": Profile(
        "short",
        seconds={"sqlite": 8, "postgresql": 15},
        users={"Browser": 3, "RestClient": 3, "BasicClient": 2, "Attacker": 1, "Administrator": 1},
        victims=6,
        burst=6,
        outage_seconds=2.0,
    ),
}

#: The user classes and the kind of account each owns.
ACCOUNT_KINDS = {"Browser": "browser", "RestClient": "rest", "BasicClient": "basic", "Administrator": "admin"}
MANAGED_PER_ADMINISTRATOR = 3  # accounts whose password the administrator changes


@dataclass
class Plan:
    target: str
    servers: list[str]
    https: bool  # behind production.ini's trusted proxy: send X-Forwarded-Proto: https
    session_cookie: str
    remember_cookie: str
    max_failures: int
    burst: int
    users: dict[str, int]
    results: str  # where the Locust process writes its journal
    accounts: dict[str, list[list[str]]] = field(default_factory=dict)  # kind -> [[name, password]]
    ca_file: str = ""  # a CA the users trust instead of the system's (https through make cluster's nginx)

    @classmethod
    def build(cls, target: str, profile: Profile, servers: list[str], https: bool, results: Path) -> Plan:
        prefix = "__Host-" if https else ""
        plan = cls(
            target=target,
            servers=servers,
            https=https,
            session_cookie=f"{prefix}appserver.session",
            remember_cookie=f"{prefix}appserver.remember",
            max_failures=3,
            burst=profile.burst,
            users=dict(profile.users),
            results=str(results),
        )
        for user_class, kind in ACCOUNT_KINDS.items():
            plan.accounts[kind] = [_account(f"{kind}{i}") for i in range(profile.users.get(user_class, 0))]
        administrators = profile.users.get("Administrator", 0)
        plan.accounts["managed"] = [_account(f"managed{i}") for i in range(administrators * MANAGED_PER_ADMINISTRATOR)]
        plan.accounts["victim"] = [_account(f"victim{i}") for i in range(profile.victims)]
        return plan

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | None = None) -> Plan:
        return cls(**json.loads(Path(path or os.environ[PLAN_VARIABLE]).read_text()))

    def all_accounts(self) -> list[tuple[str, str, bool]]:
        """(name, password, admin) of every account the run needs."""
        return [
            (name, password, kind == "admin")
            for kind, accounts in self.accounts.items()
            for name, password in accounts
        ]


def _account(name: str) -> list[str]:
    return [name, f"{name}-load-password"]
