"""A warning that every request may raise at once, logged at a bounded rate."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from weakref import WeakSet

#: Seconds between two lines of one repeated warning.
INTERVAL = 5.0
#: Kinds of warning remembered at once; a new kind past this forgets the others.
MAX_KINDS = 64


class RepeatedWarning:
    """Of each kind, the first warning, then at most one per ``interval`` seconds, saying how
    many were left out since the last. While the database is down every request answers 503
    and each logged a line: 12,600 in a 15-second outage of two processes (an outside
    review), enough to drown the lines that matter and to meet journald's rate limit. The
    kind is what went wrong (a refused connection, a lock timeout), so one kind never hides
    another."""

    instances: WeakSet[RepeatedWarning] = WeakSet()

    def __init__(self, logger: logging.Logger, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._kinds: dict[str, tuple[float, int]] = {}  # kind: (next line's time, left out)
        RepeatedWarning.instances.add(self)

    def warning(self, kind: str, message: str, *args: object) -> None:
        now = self.clock()
        with self._lock:
            due, left_out = self._kinds.get(kind, (float("-inf"), 0))
            if now < due:
                self._kinds[kind] = (due, left_out + 1)
                return
            if kind not in self._kinds and len(self._kinds) >= MAX_KINDS:
                self._kinds.clear()
            self._kinds[kind] = (now + self.interval, 0)
        if left_out:
            message, args = message + " (and %d more since the last such line)", (*args, left_out)
        self.logger.warning(message, *args)

    def reset(self) -> None:
        """Forget every kind: the next warning of each is logged (tests, one per test)."""
        with self._lock:
            self._kinds.clear()
