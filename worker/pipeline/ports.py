"""What the drain pipeline needs from the outside world, gathered once per worker process.

Each port is a ``Protocol``: the partition store and the rate limiter (Redis, ``worker.store``), the Customer.io
client (``worker.delivery``), the failure reporter (Sentry, ``worker.ops.observability``), the metrics and the
clock. The worker passes the real adapters (``worker.runtime``); tests may pass in-memory ones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from worker.ops.observability import report_permanent_failure
from worker.pipeline.shutdown import ActiveLeases
from worker.pipeline.slots import WorkspaceSlots

if TYPE_CHECKING:
    from worker.delivery import BatchResponse
    from worker.pipeline.planning import PlannedEntry
    from worker.settings import Settings, WorkspaceConfig
    from worker.store.partitions import Entry, Head, LeaseRefusal, PartitionStore, ReadStep, RetryState
    from worker.store.ratelimit import AuthPause, Fence, Reservation, WorkspaceLimiter

log = logging.getLogger("cio_fleet.pipeline")


class PartitionStorePort(Protocol):
    """A partition's stream, lease and run of failures, with settling fenced by the lease token
    (``worker.store.partitions.PartitionStore``)."""

    prefix: str

    def now_ms(self) -> int: ...
    def take_lease(self, workspace: str, partition: int, token: str, ttl_ms: int) -> LeaseRefusal | None: ...
    def renew_lease(self, workspace: str, partition: int, token: str, ttl_ms: int) -> bool: ...
    def release_lease(self, workspace: str, partition: int, token: str, ttl_ms: int) -> bool: ...
    def defer(self, workspace: str, partition: int, token: str, delay_ms: int) -> bool: ...
    def kick_retry_timer(self, workspace: str, partition: int, ttl_ms: int) -> bool: ...
    def park(self, workspace: str, partition: int, ttl_ms: int) -> bool: ...
    def unpark(self, workspace: str, partition: int, ttl_ms: int) -> bool: ...
    def refresh_parked(self, workspace: str, partitions: Sequence[int], ttl_ms: int) -> None: ...
    def forget_kick(self, workspace: str, partition: int) -> bool: ...
    def read(self, workspace: str, partition: int, count: int, max_bytes: int) -> list[Entry]: ...
    def read_head(
        self, workspace: str, partition: int, token: str, ttl_ms: int, count: int, max_bytes: int
    ) -> Head | None: ...
    def retry_state(self, workspace: str, partition: int) -> RetryState | None: ...
    def record_failure(self, workspace: str, partition: int, token: str, state: RetryState, error: str) -> bool: ...
    def end_retry_run(self, workspace: str, partition: int) -> None: ...
    def end_retry_timers(self, workspace: str, partitions: int) -> int: ...
    def settle(
        self,
        workspace: str,
        partition: int,
        token: str,
        done_ids: Sequence[str],
        dead_letters: Sequence[tuple[str, Mapping[str, Any]]] = (),
        *,
        clear_retry: bool = False,
    ) -> bool: ...
    def settle_and_read(
        self,
        workspace: str,
        partition: int,
        token: str,
        done_ids: Sequence[str],
        dead_letters: Sequence[tuple[str, Mapping[str, Any]]],
        *,
        clear_retry: bool,
        read: ReadStep,
    ) -> Head | None: ...
    def claim_probe(self, workspace: str, interval_ms: int) -> float | None: ...
    def hold_probe(self, workspace: str, interval_ms: int) -> None: ...
    def dead_letter_count(self, workspace: str) -> int: ...
    def span(self, workspace: str, partitions: int) -> int: ...
    def older_streams_wait(self, workspace: str, partitions: int, span: int) -> bool: ...
    def fences(self, workspace: str) -> dict[int, str]: ...


class LimiterPort(Protocol):
    """The workspace's fleet-wide rate limiter and pauses (``worker.store.ratelimit.WorkspaceLimiter``)."""

    def reserve(
        self,
        workspace: str,
        rps: float,
        burst: int,
        max_wait_s: float,
        *,
        give_back: Reservation | None = None,
        fence: Fence | None = None,
    ) -> Reservation: ...
    def pause(self, workspace: str, seconds: float, reason: str) -> None: ...
    def pause_auth(self, workspace: str, *, status: int, reason: str, fingerprint: str) -> None: ...
    def auth_pause(self, workspace: str) -> AuthPause | None: ...
    def clear_auth_pause(self, workspace: str) -> None: ...


class FailureReporter(Protocol):
    """Tells the error tracker that events were dead-lettered (``worker.ops.observability``: Sentry)."""

    def __call__(self, workspace: str, outcome: str, status: int | None, count: int) -> None: ...


class Clock(Protocol):
    """A monotonic clock in seconds (``time.monotonic``)."""

    def __call__(self) -> float: ...


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
class Ports:
    """The pipeline's ports, each a Protocol: what ``worker.pipeline`` takes (tests may pass in-memory ones)."""

    settings: Settings
    store: PartitionStorePort
    limiter: LimiterPort
    client: BatchPoster
    metrics: Metrics = field(default_factory=NullMetrics)
    #: Where dead-lettered events are reported (Sentry).
    report_failure: FailureReporter = report_permanent_failure
    host: str = ""
    sleep: Callable[[float], None] = time.sleep
    #: Wait up to the given seconds, returning at once (True) when the worker starts shutting down.
    wait_or_stop: Callable[[float], bool] = field(default_factory=lambda: threading.Event().wait)
    monotonic: Clock = time.monotonic
    slots: WorkspaceSlots = field(default_factory=lambda: WorkspaceSlots(8))
    #: The partition leases this process holds, released by the shutdown watchdog if the grace runs out.
    leases: ActiveLeases = field(default_factory=ActiveLeases)
    #: Set when the worker is shutting down: drainers stop after the batch in flight.
    stopping: Callable[[], bool] = lambda: False


@dataclass
class Deps(Ports):
    """The ports of a worker process, on Redis: built once per process, in ``worker.runtime``."""

    store: PartitionStore
    limiter: WorkspaceLimiter


def observe_settled(
    deps: Ports,
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


def observe_dropped_timestamps(deps: Ports, workspace: str, settled: Sequence[PlannedEntry]) -> None:
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
