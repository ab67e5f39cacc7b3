"""A login burst keeps memory bounded: at most ``appserver.password.max_concurrent_hashes``
password hashes (argon2id, 19 MiB each) run at once per process; the others wait for a slot
and then all complete."""
from __future__ import annotations

import threading

from appserver.security.passwords import PasswordService

LIMIT = 2
CALLERS = 6


class GatedContext:
    """Stands in for passlib's context: each hash waits at a gate the test opens."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.changed = threading.Condition()
        self.inside = 0
        self.most_inside = 0

    def verify_and_update(self, password: str, password_hash: str):
        with self.changed:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            self.changed.notify_all()
        self.gate.wait()
        with self.changed:
            self.inside -= 1
        return True, None


def test_at_most_the_configured_number_of_hashes_run_at_once_and_the_rest_wait():
    service = PasswordService(max_concurrent=LIMIT)
    context = GatedContext()
    service.context = context
    answers: list[bool] = []
    callers = [
        threading.Thread(target=lambda: answers.append(service.verify("pw", "hash")[0]))
        for _ in range(CALLERS)
    ]
    for caller in callers:
        caller.start()
    with context.changed:
        assert context.changed.wait_for(lambda: context.inside >= LIMIT, timeout=30)
        # With the slots taken, nobody else gets in, however long the others try.
        assert not context.changed.wait_for(lambda: context.inside > LIMIT, timeout=1)
    context.gate.set()
    for caller in callers:
        caller.join(timeout=30)
    assert answers == [True] * CALLERS  # the waiting ones were served, not refused
    assert context.most_inside == LIMIT
