"""One touch per row and interval per process, not one per request in flight.

A session (or personal access token) is touched -- ``last_seen_at`` written -- at most once
per touch interval. But every request that looked the row up before that write committed
also finds the touch due: under load, dozens of requests of one client arrive in the same
millisecond, each would ``UPDATE`` the same row, and on PostgreSQL each waits for the row
lock of the one before and commits in turn. Every worker thread of the process stalls behind
that queue for as long as it lasts (the benchmark's p99 outliers of 150-560 ms). Here the
first request of a process claims the touch and the others skip it.

Skipping is safe: a skipped touch changes nothing a client can see. The request is served as
its lookup found the session, like every request that was not due; the claiming request does
the write, and if it fails, it gives the claim back so that the next request tries again.
Processes do not share claims: with N processes at most N touches of one row run at once.
(The same holds for personal access tokens and their ``last_accessed_at``.)
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from pyramid.request import Request
from sqlalchemy.orm import Session

from ..models.units import unit


class RecentTouches:
    """The touches this process claimed lately, at most ``max_entries`` (oldest forgotten).

    A key names a row *and the value its lookup read* (``last_seen_at``): every request that
    read the same value is due for the same touch, and only the first one claims it. Once
    the touch commits, lookups read the new value and are not due."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._claims: OrderedDict[Hashable, None] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, key: Hashable) -> bool:
        """True if the caller should do the touch ``key``; False if it was claimed already."""
        with self._lock:
            if key in self._claims:
                return False
            self._claims[key] = None
            while len(self._claims) > self.max_entries:
                self._claims.popitem(last=False)
            return True

    def release(self, key: Hashable) -> None:
        """The touch ``key`` did not happen: let the next request try."""
        with self._lock:
            self._claims.pop(key, None)

    def __len__(self) -> int:
        return len(self._claims)


def touch_once(
    request: Request, touches: RecentTouches, key: Hashable, touch: Callable[[Session], bool]
) -> bool:
    """Run ``touch`` in a write unit of its own if this process claims ``key``; False only
    if it ran and found the row revoked meanwhile (the request must not use it)."""
    if not touches.claim(key):
        return True
    try:
        with unit(request, write=True) as db:
            touched = touch(db)
    except BaseException:
        touches.release(key)
        raise
    if not touched:
        touches.release(key)
    return touched
