"""What the drain pipeline needs from the outside world, gathered once per worker process."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from worker.pipeline.shutdown import ActiveLeases
from worker.pipeline.slots import WorkspaceSlots

if TYPE_CHECKING:
    from worker.delivery import BatchResponse
    from worker.pipeline.planning import PlannedEntry
    from worker.settings import Settings, WorkspaceConfig
    from worker.store.partitions import PartitionStore
    from worker.store.ratelimit import WorkspaceLimiter

log = logging.getLogger("cio_fleet.pipeline")


class BatchPoster(Protocol):
    """Posts one batch body for a workspace (``worker.delivery.CustomerIOClient``)."""

    def post_batch(self, workspace: WorkspaceConfig, body: bytes) -> BatchResponse: ...


class Metrics(Protocol):
    """The counters the pipeline moves (``worker.ops.metrics.FleetMetrics``)."""

    def delivered(self, workspace: str, type: str, n: int = 1) -> None: ...
    def skipped(self, workspace: str, type: str, n: int = 1) -> None: ...
    def rejected(self, workspace: str, type: str, n: int = 1) -> None: ...
    def dead_lettered(self, workspace: str, outcome: str, n: int = 1) -> None: ...
    def request(self, workspace: str, status: int | None, seconds: float, events: int, nbytes: int) -> None: ...
    def end_to_end(self, workspace: str, seconds: float) -> None: ...
    def limiter_wait(self, workspace: str, seconds: float) -> None: ...
    def auth_failure(self, workspace: str) -> None: ...
    def timestamps_dropped(self, workspace: str, field: str, n: int = 1) -> None: ...


class NullMetrics:
    """Metrics that go nowhere (tests, tools)."""

    def delivered(self, workspace: str, type: str, n: int = 1) -> None:
        """Ignore."""

    def skipped(self, workspace: str, type: str, n: int = 1) -> None:
        """Ignore."""

    def rejected(self, workspace: str, type: str, n: int = 1) -> None:
        """Ignore."""

    def dead_lettered(self, workspace: str, outcome: str, n: int = 1) -> None:
        """Ignore."""

    def request(self, workspace: str, status: int | None, seconds: float, events: int, nbytes: int) -> None:
        """Ignore."""

    def end_to_end(self, workspace: str, seconds: float) -> None:
        """Ignore."""

    def limiter_wait(self, workspace: str, seconds: float) -> None:
        """Ignore."""

    def auth_failure(self, workspace: str) -> None:
        """Ignore."""

    def timestamps_dropped(self, workspace: str, field: str, n: int = 1) -> None:
        """Ignore."""


@dataclass
class Deps:
    """The pipeline's ports: built once per worker process, in ``worker.tasks``."""

    settings: Settings
    store: PartitionStore
    limiter: WorkspaceLimiter
    client: BatchPoster
    metrics: Metrics = field(default_factory=NullMetrics)
    host: str = ""
    sleep: Callable[[float], None] = time.sleep
    #: Wait up to the given seconds, returning at once (True) when the worker starts shutting down.
    wait_or_stop: Callable[[float], bool] = field(default_factory=lambda: threading.Event().wait)
    monotonic: Callable[[], float] = time.monotonic
    slots: WorkspaceSlots = field(default_factory=lambda: WorkspaceSlots(8))
    #: The partition leases this process holds, released by the shutdown watchdog if the grace runs out.
    leases: ActiveLeases = field(default_factory=ActiveLeases)
    #: Set when the worker is shutting down: drainers stop after the batch in flight.
    stopping: Callable[[], bool] = lambda: False


def observe_settled(
    deps: Deps,
    workspace: str,
    delivered: Sequence[PlannedEntry],
    dead: Sequence[tuple[PlannedEntry, str]],
) -> None:
    """Count what was settled: delivered events by type, their latency, dead letters by outcome, unreadable times."""
    if not delivered and not dead:
        return
    now_ms = time.time() * 1000
    for entry in delivered:
        deps.metrics.delivered(workspace, entry.event_type)
        deps.metrics.end_to_end(workspace, max(now_ms - entry.entry.enqueued_at_ms, 0.0) / 1000)
    outcomes: dict[str, int] = {}
    for _, outcome in dead:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    for outcome, count in outcomes.items():
        deps.metrics.dead_lettered(workspace, outcome, count)
    observe_dropped_timestamps(deps, workspace, [*delivered, *(entry for entry, _ in dead)])


def observe_dropped_timestamps(deps: Deps, workspace: str, settled: Sequence[PlannedEntry]) -> None:
    """Count and log (debug) the settled events whose time could not be read, by field: a producer's bad clock."""
    fields: dict[str, int] = {}
    for entry in settled:
        if not entry.dropped_timestamps:
            continue
        log.debug(
            "event times unreadable: left out or passed as given",
            extra={"workspace": workspace, "entry_id": entry.entry.id, "fields": list(entry.dropped_timestamps)},
        )
        for name in entry.dropped_timestamps:
            fields[name] = fields.get(name, 0) + 1
    for name, count in fields.items():
        deps.metrics.timestamps_dropped(workspace, name, count)
