"""The one source of "now".

Expiry, lock-outs and remember-me all depend on time; tests replace the registry's clock
instead of sleeping.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Protocol

from pyramid.config import Configurator


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FrozenClock:
    """A clock that only moves when told to: for tests and benchmarks."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> datetime:
        self.current += timedelta(seconds=seconds)
        return self.current


def includeme(config: Configurator) -> None:
    clock = config.get_settings().get("appserver.clock") or SystemClock()
    config.registry.clock = clock
    config.add_request_method(lambda request: request.registry.clock.now(), "now", reify=True)
