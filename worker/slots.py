"""Per-workspace drain slots of one worker process, so that one slow workspace cannot hold every thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class WorkspaceSlots:
    """At most ``limit`` drains of the same workspace run at once in this process."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._lock = threading.Lock()
        self._busy: dict[str, int] = {}

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

    def busy(self, workspace: str) -> int:
        """Slots the workspace holds now."""
        with self._lock:
            return self._busy.get(workspace, 0)
