"""Graceful shutdown: drains stop after the batch in flight, and whatever is still running when the grace
period (``CIO_SHUTDOWN_GRACE_S``) ends is released to the rest of the fleet.

Released, the partitions are drained by other workers at once; the requests still in flight here end by their
HTTP timeout, after which Celery completes its warm shutdown (and puts back any task it had not started).
A response that arrives after the release is still settled: at worst an event is delivered twice, with one id.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("cio_fleet.shutdown")

#: (workspace, partition, owner token) of a drain in progress.
Lease = tuple[str, int, str]


class ActiveLeases:
    """The partition leases this process holds right now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: set[Lease] = set()

    def add(self, lease: Lease) -> None:
        """A drain took a lease."""
        with self._lock:
            self._leases.add(lease)

    def discard(self, lease: Lease) -> None:
        """A drain left its lease (released, deferred or lost)."""
        with self._lock:
            self._leases.discard(lease)

    def snapshot(self) -> list[Lease]:
        """The leases held now."""
        with self._lock:
            return sorted(self._leases)


class ShutdownWatchdog:
    """After ``grace_s``, releases the leases still held, so that other workers take their partitions over."""

    def __init__(self, grace_s: float, leases: ActiveLeases, release: Callable[[Lease], None]) -> None:
        self.grace_s = grace_s
        self.leases = leases
        self.release = release
        self._thread = threading.Thread(target=self._run, name="cio-fleet-shutdown-watchdog", daemon=True)

    def start(self) -> None:
        """Start counting down."""
        self._thread.start()

    def expire(self) -> int:
        """Release every lease still held; returns how many."""
        held = self.leases.snapshot()
        for lease in held:
            try:
                self.release(lease)
            except Exception:
                log.exception("could not release a lease; it expires after its TTL", extra={"partition": lease[1]})
        return len(held)

    def _run(self) -> None:
        threading.Event().wait(self.grace_s)
        released = self.expire()
        if released:
            log.error(
                "shutdown grace over with requests in flight; their partitions were released to other workers",
                extra={"released": released, "grace_s": self.grace_s},
            )
