"""Per-workspace drain slots of one worker process, so that one slow workspace cannot hold every thread.

A drain that finds its workspace's slots all taken does not wait on a thread: its partition is parked here, and
the next drain of that workspace to finish hands it back (the Celery edge queues it at once). Meanwhile its lease
is ``parked`` (no drain task is queued for it), refreshed by every drain of the workspace that finishes in this
process; if the process dies, the lease expires within seconds and the sweeper picks the partition up.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


class WorkspaceSlots:
    """At most ``limit`` drains of the same workspace run at once in this process."""

    def __init__(self, limit: int, threads: int | None = None) -> None:
        """``limit`` drains per workspace; ``threads``: the process's threads (None: unknown, never short)."""
        self.limit = max(1, limit)
        self.threads = threads
        self._lock = threading.Lock()
        self._busy: dict[str, int] = {}
        self._parked: dict[str, deque[int]] = {}

    @contextmanager
    def hold(self, workspace: str) -> Iterator[bool]:
        """Yield True with a slot held for the block, or False when the workspace has none free."""
        with self._lock:
            taken = self._busy.get(workspace, 0) < self.limit
            if taken:
                self._busy[workspace] = self._busy.get(workspace, 0) + 1
        try:
            yield taken
        finally:
            if taken:
                with self._lock:
                    self._busy[workspace] -= 1

    def park(self, workspace: str, partition: int) -> None:
        """Remember a partition that found no free slot."""
        with self._lock:
            waiting = self._parked.setdefault(workspace, deque())
            if partition not in waiting:
                waiting.append(partition)

    def unpark(self, workspace: str, *, every: bool = False) -> tuple[int, ...]:
        """The longest-parked partition of the workspace (or all of them, when shutting down), to queue again now."""
        with self._lock:
            waiting = self._parked.get(workspace)
            if not waiting:
                return ()
            if every:
                handed = tuple(waiting)
                waiting.clear()
                return handed
            return (waiting.popleft(),)

    def parked(self, workspace: str) -> tuple[int, ...]:
        """The partitions of the workspace parked now, longest-parked first."""
        with self._lock:
            return tuple(self._parked.get(workspace, ()))

    def busy(self, workspace: str) -> int:
        """Slots the workspace holds now."""
        with self._lock:
            return self._busy.get(workspace, 0)

    def spare_thread(self, *, caller_holds_none: bool = False) -> bool:
        """Whether a thread of the process is free of drains (so a task that waits in the queue gets one now).

        ``caller_holds_none``: the caller is a drain thread between two slots; its own thread is not free.
        """
        if self.threads is None:
            return True
        with self._lock:
            return sum(self._busy.values()) + caller_holds_none < self.threads
