"""A cheap, local health check of one worker process: is its Celery consumer consuming, is its sweeper sweeping?

Each watched part beats: the consumer from a timer of its own event loop (so a dead or wedged consumer stops
beating, and a consumer stopped by a lost broker connection is marked down until it restarts), the sweeper after
each round (also when Redis does not answer: the loop itself is alive).

On the metrics port, ``/healthz`` (readiness) answers 200 while every part beat recently and none is down, else 503,
with a JSON body naming the parts; ``/livez`` (liveness) fails only when a part has not beaten for
``LIVENESS_FACTOR`` times its limit, so a broker outage takes pods out of service at once but restarts them only if
it lasts. Both cost a dictionary read: no broker round trip, no Celery client (the Kubernetes probes call them every
few seconds on every pod).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

#: How often the consumer beats.
CONSUMER_BEAT_S: Final = 5.0
#: A consumer that has not beaten for this long is unhealthy (a few missed beats, never one late beat).
CONSUMER_STALE_S: Final = 30.0
#: Liveness tolerates this many times a part's limit, and a part that says it is down (a lost broker connection).
LIVENESS_FACTOR: Final = 10


@dataclass(frozen=True, slots=True)
class PartStatus:
    """One watched part: healthy or not, and why."""

    name: str
    healthy: bool
    detail: str


def judge(name: str, last_beat: float | None, down_reason: str | None, stale_after_s: float, now: float) -> PartStatus:
    """The status of one part from its last beat (pure).

    Args:
        name: The part's name.
        last_beat: Monotonic time of its last beat, None before the first.
        down_reason: Set when the part reported itself down (cleared by its next beat).
        stale_after_s: How old a beat may be.
        now: Monotonic time now.
    """
    if down_reason is not None:
        return PartStatus(name, False, down_reason)
    if last_beat is None:
        return PartStatus(name, False, "not started")
    age = now - last_beat
    if age > stale_after_s:
        return PartStatus(name, False, f"no beat for {age:.0f} s (limit {stale_after_s:.0f} s)")
    return PartStatus(name, True, f"beat {age:.1f} s ago")


class Health:
    """The beats of a process's watched parts."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._limits: dict[str, float] = {}
        self._beats: dict[str, float] = {}
        self._down: dict[str, str] = {}

    def watch(self, name: str, stale_after_s: float) -> None:
        """Watch a part from now on: it is unhealthy until it first beats."""
        with self._lock:
            self._limits[name] = stale_after_s

    def beat(self, name: str) -> None:
        """The part is alive now."""
        with self._lock:
            self._beats[name] = self._clock()
            self._down.pop(name, None)

    def down(self, name: str, reason: str) -> None:
        """The part stopped (it is unhealthy until it beats again)."""
        with self._lock:
            self._down[name] = reason

    def report(self, *, live: bool = False) -> tuple[bool, list[PartStatus]]:
        """Whether every watched part is healthy (``live``: alive at all), and each part's status."""
        factor = LIVENESS_FACTOR if live else 1
        with self._lock:
            now = self._clock()
            parts = [
                judge(name, self._beats.get(name), None if live else self._down.get(name), limit * factor, now)
                for name, limit in sorted(self._limits.items())
            ]
        return all(part.healthy for part in parts), parts
