"""Prometheus metrics of a worker process, each defined once, plus a collector that reads fleet state from Redis.

Two kinds of numbers:

* **What this process did** (counters and histograms on ``FleetMetrics``): events delivered, skipped,
  rejected and dead-lettered, requests by status, batch sizes, request and end-to-end latency, rate limiter
  waits, auth failures. Prometheus sums them over the fleet's processes. Plus one gauge of configuration,
  ``cio_fleet_rate_limit_rps`` (the budget requests are measured against; aggregate it with ``max``).
* **What the fleet's Redis holds** (``RedisStateCollector``, read at scrape time): events enqueued (each
  partition stream's ``entries-added``, which counts producers in any process or language), backlog, age of
  the oldest waiting event, pauses, dead letters and the dead-letter alarm. Every process reports the same
  values; aggregate them with ``max by (workspace)``, not ``sum``. Streams the sweeper's scan found outside the
  configured layouts (``{prefix}:strays``, ``worker.store.layout``) are read too: those above a workspace's partition
  count are part of its backlog, and those of a workspace nobody configured are ``cio_fleet_stranded_events``.

Labels are bounded: ``workspace`` (configured names; for ``cio_fleet_stranded_events`` also the names of
unconfigured workspaces that hold events), ``type`` (the six Segment types or ``other``),
``status`` (an HTTP status or ``error`` when no response came), ``outcome`` (the dead-letter outcomes),
``reason`` (``throttled`` or ``unauthorized``) and ``field`` (``worker.mapping.timestamps.DROPPED_FIELDS``). Never ids,
reasons in free text or payloads.

The worker runs Celery's threads pool: one process, many threads, so the default (single process) client
library mode is right and no ``PROMETHEUS_MULTIPROC_DIR`` is needed. A prefork pool would need multiprocess
mode.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from worker.deadletter.records import over_alarm
from worker.mapping.timestamps import DROPPED_FIELDS
from worker.ops.health import Health
from worker.store.clock import entry_id_ms
from worker.store.fleet_status import WorkspaceReading, read_fleet
from worker.store.layout import read_strays, stream_lengths

WsgiApp = Callable[[dict[str, Any], Any], Iterable[bytes]]

if TYPE_CHECKING:
    import redis

__all__ = [
    "DEAD_LETTER_OUTCOMES",
    "EVENT_TYPES",
    "FleetMetrics",
    "RedisStateCollector",
    "WorkspaceState",
    "entry_time_s",
    "outcome_label",
    "start_metrics_server",
    "state_families",
    "status_label",
    "type_label",
]

#: The logger keeps the name it had before the module moved into ``worker.ops`` (log filters may use it).
log = logging.getLogger("worker.ops.metrics")

#: The values of the ``type`` label; anything else is counted as ``other``.
EVENT_TYPES: Final = frozenset({"identify", "group", "track", "page", "screen", "alias"})
#: The values of the ``outcome`` label (docs/architecture.md, dead-letter fields).
DEAD_LETTER_OUTCOMES: Final = frozenset({"rejected", "failed_after_retries", "item_rejected"})
#: The label value for anything outside a bounded set.
OTHER: Final = "other"
#: ``status`` label of a request that got no HTTP response (timeout, connection error).
NO_RESPONSE: Final = "error"

_BATCH_EVENT_BUCKETS: Final = (1, 2, 5, 10, 25, 50, 100, 200, 500, 1000, 5000)
_BATCH_BYTE_BUCKETS: Final = (1e3, 5e3, 1e4, 5e4, 1e5, 2e5, 3e5, 4e5, 5e5)
_REQUEST_BUCKETS: Final = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30)
_LATENCY_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400)
_WAIT_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120)


def type_label(event_type: str | None) -> str:
    """The bounded ``type`` label of a Segment event type."""
    return event_type if event_type in EVENT_TYPES else OTHER


def outcome_label(outcome: str) -> str:
    """The bounded ``outcome`` label of a dead-letter outcome."""
    return outcome if outcome in DEAD_LETTER_OUTCOMES else OTHER


def status_label(status: int | None) -> str:
    """The bounded ``status`` label: the HTTP status, or ``error`` when no response came."""
    if status is None:
        return NO_RESPONSE
    return str(status) if 100 <= status <= 599 else OTHER


def entry_time_s(entry_id: str | bytes) -> float:
    """When Redis appended a stream entry, in unix seconds, read from its id (``<ms>-<seq>``)."""
    return entry_id_ms(entry_id) / 1000


def _histogram(name: str, documentation: str, buckets: tuple[float, ...], registry: CollectorRegistry) -> Histogram:
    return Histogram(name, documentation, ["workspace"], buckets=buckets, registry=registry)


def observe_many(histogram: Histogram, values: list[float]) -> None:
    """Observe every value of ``values`` in one labelled histogram: one increment per bucket touched, not per value.

    prometheus-client's ``observe`` takes two locks and scans the buckets for each value; for the 200 latencies of a
    batch that was a tenth of a worker's Python time. Falls back to ``observe`` when the child's internals are not
    the ones relied on (``_upper_bounds``, ``_buckets``, ``_sum``; ``tests/unit/test_metrics.py`` compares both).
    """
    bounds, buckets, total = (getattr(histogram, name, None) for name in ("_upper_bounds", "_buckets", "_sum"))
    if bounds is None or buckets is None or total is None:
        for value in values:
            histogram.observe(value)
        return
    counts: dict[int, int] = {}
    for value in values:
        index = bisect.bisect_left(bounds, value)  # the first bound >= value, as ``observe`` finds it
        counts[index] = counts.get(index, 0) + 1
    total.inc(sum(values))
    for index, count in counts.items():
        buckets[index].inc(count)


class FleetMetrics:
    """Every metric of a worker process, on a registry of its own (tests may build several)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Define the metrics.

        Args:
            registry: Where to register them; a new ``CollectorRegistry`` when omitted.
        """
        self.registry = registry if registry is not None else CollectorRegistry()
        r, ws_type = self.registry, ["workspace", "type"]
        self.events_delivered = Counter("cio_fleet_events_delivered", "Events accepted.", ws_type, registry=r)
        self.events_skipped = Counter("cio_fleet_events_skipped", "Events skipped by the mapping.", ws_type, registry=r)
        self.events_rejected = Counter("cio_fleet_events_rejected", "Events refused for good.", ws_type, registry=r)
        self.events_dead_lettered = Counter(
            "cio_fleet_events_dead_lettered", "Events written to the DLQ.", ["workspace", "outcome"], registry=r
        )
        self.requests = Counter("cio_fleet_requests", "Track API requests.", ["workspace", "status"], registry=r)
        self.auth_failures = Counter("cio_fleet_auth_failures", "Requests answered 401/403.", ["workspace"], registry=r)
        self.batch_events = _histogram("cio_fleet_batch_events", "Events per batch request.", _BATCH_EVENT_BUCKETS, r)
        self.batch_bytes = _histogram("cio_fleet_batch_bytes", "Body bytes per batch request.", _BATCH_BYTE_BUCKETS, r)
        self.request_duration = _histogram(
            "cio_fleet_request_duration_seconds", "Track API request duration.", _REQUEST_BUCKETS, r
        )
        self.end_to_end_latency = _histogram(
            "cio_fleet_end_to_end_latency_seconds", "Enqueue (entry id) to acceptance.", _LATENCY_BUCKETS, r
        )
        self.limiter_wait_seconds = _histogram(
            "cio_fleet_rate_limiter_wait_seconds", "Waits imposed by the fleet-wide limiter.", _WAIT_BUCKETS, r
        )
        self.timestamps_dropped_events = Counter(
            "cio_fleet_timestamps_dropped",
            "Events whose time could not be read: left out, or sent as given (created_at).",
            ["workspace", "field"],
            registry=r,
        )
        self.rate_limit_rps = Gauge(
            "cio_fleet_rate_limit_rps",
            "The workspace's configured rate_limit_rps: the budget of Track API requests per second.",
            ["workspace"],
            registry=r,
        )

    def delivered(self, workspace: str, type: str, n: int = 1) -> None:
        """Count events Customer.io accepted."""
        self.events_delivered.labels(workspace, type_label(type)).inc(n)

    def skipped(self, workspace: str, type: str, n: int = 1) -> None:
        """Count events the mapping skipped on purpose."""
        self.events_skipped.labels(workspace, type_label(type)).inc(n)

    def rejected(self, workspace: str, type: str, n: int = 1) -> None:
        """Count events refused permanently (before or by Customer.io)."""
        self.events_rejected.labels(workspace, type_label(type)).inc(n)

    def dead_lettered(self, workspace: str, outcome: str, n: int = 1) -> None:
        """Count events written to the dead-letter queue."""
        self.events_dead_lettered.labels(workspace, outcome_label(outcome)).inc(n)

    def request(self, workspace: str, status: int | None, seconds: float, events: int, nbytes: int) -> None:
        """Record one Track API request: its status, duration and batch size.

        Args:
            workspace: The workspace's name.
            status: The HTTP status, or None when no response came.
            seconds: How long the request took.
            events: Operations in the batch.
            nbytes: Bytes of the request body.
        """
        self.requests.labels(workspace, status_label(status)).inc()
        self.request_duration.labels(workspace).observe(seconds)
        self.batch_events.labels(workspace).observe(events)
        self.batch_bytes.labels(workspace).observe(nbytes)

    def end_to_end(self, workspace: str, *seconds: float) -> None:
        """Record events' times from enqueue to acceptance."""
        observe_many(self.end_to_end_latency.labels(workspace), [max(0.0, value) for value in seconds])

    def end_to_end_from_ids(self, workspace: str, entry_ids: Iterable[str | bytes], accepted_at_s: float) -> None:
        """Record the end-to-end latency of accepted stream entries, enqueue time read from their ids.

        Args:
            workspace: The workspace's name.
            entry_ids: Stream entry ids of the accepted events.
            accepted_at_s: Unix time of the acceptance (the worker's clock; hosts should run NTP).
        """
        histogram = self.end_to_end_latency.labels(workspace)
        for entry_id in entry_ids:
            histogram.observe(max(0.0, accepted_at_s - entry_time_s(entry_id)))

    def limiter_wait(self, workspace: str, seconds: float) -> None:
        """Record a wait imposed by the rate limiter or a fleet-wide pause."""
        self.limiter_wait_seconds.labels(workspace).observe(seconds)

    def auth_failure(self, workspace: str) -> None:
        """Count a 401/403 answer."""
        self.auth_failures.labels(workspace).inc()

    def timestamps_dropped(self, workspace: str, field: str, n: int = 1) -> None:
        """Count events whose time in ``field`` could not be read (a producer's clock or format is wrong)."""
        self.timestamps_dropped_events.labels(workspace, field if field in DROPPED_FIELDS else OTHER).inc(n)

    def prepare(self, workspaces: Iterable[str]) -> None:
        """Create the zero series of configured workspaces, so rates exist before the first event."""
        for workspace in workspaces:
            for event_type in sorted(EVENT_TYPES):
                self.events_delivered.labels(workspace, event_type)
                self.events_rejected.labels(workspace, event_type)
            self.auth_failures.labels(workspace)
            for field in DROPPED_FIELDS:
                self.timestamps_dropped_events.labels(workspace, field)

    def budget(self, rate_limits: Mapping[str, float]) -> None:
        """Export each workspace's configured ``rate_limit_rps``, so dashboards can show requests against it."""
        for workspace, rps in rate_limits.items():
            self.rate_limit_rps.labels(workspace).set(rps)

    def watch_redis(
        self,
        client: redis.Redis,
        prefix: str,
        workspaces: Mapping[str, int],
        dlq_max_entries: int,
        dlq_alarm_ratio: float,
    ) -> RedisStateCollector:
        """Register a ``RedisStateCollector`` on this registry and return it."""
        collector = RedisStateCollector(client, prefix, workspaces, dlq_max_entries, dlq_alarm_ratio)
        self.registry.register(collector)
        return collector


@dataclass(frozen=True, slots=True)
class WorkspaceState:
    """What Redis holds for one workspace at one instant."""

    enqueued: int
    backlog: int
    enqueued_by_type: Mapping[str, int]
    oldest_entry_ms: int | None
    throttled: bool
    unauthorized: bool
    dead_letters: int


def _by_type(counts: Mapping[Any, Any]) -> dict[str, int]:
    """The producers' enqueued-by-type hash, with unknown names folded into ``other``."""
    folded: dict[str, int] = {}
    for name, count in counts.items():
        label = type_label(name.decode() if isinstance(name, bytes) else str(name))
        folded[label] = folded.get(label, 0) + int(count)
    return folded


def workspace_state(reading: WorkspaceReading) -> WorkspaceState:
    """The metrics' view of a workspace's reading (pure)."""
    facts = reading.partitions
    oldest = [f.oldest_ms for f in facts if f.oldest_ms is not None]
    return WorkspaceState(
        enqueued=sum(f.added for f in facts),
        backlog=sum(f.backlog for f in facts),
        enqueued_by_type=_by_type(reading.enqueued_by_type),
        oldest_entry_ms=min(oldest) if oldest else None,
        throttled=reading.pause_ttl_ms > 0,
        unauthorized=bool(reading.auth),
        dead_letters=reading.dead_letters,
    )


def read_state(
    client: redis.Redis,
    prefix: str,
    workspaces: Mapping[str, int],
    extra: Mapping[str, Iterable[int]] | None = None,
) -> tuple[int, dict[str, WorkspaceState]]:
    """Redis's time in ms and every workspace's state (``extra``: streams above its count), in one round trip.

    Raises:
        RedisError: Redis did not answer.
    """
    numbers = {ws: [*range(n), *sorted(p for p in (extra or {}).get(ws, ()) if p >= n)] for ws, n in workspaces.items()}
    now_ms, readings = read_fleet(client, prefix, numbers)
    return now_ms, {workspace: workspace_state(reading) for workspace, reading in readings.items()}


def state_families(
    now_ms: int,
    states: Mapping[str, WorkspaceState],
    dlq_max_entries: int,
    dlq_alarm_ratio: float,
    stranded: Mapping[str, int] | None = None,
) -> list[Metric]:
    """The metric families of a Redis state reading (pure); ``stranded``: events per unconfigured workspace."""
    enqueued = CounterMetricFamily(
        "cio_fleet_events_enqueued",
        "Events appended to the workspace's streams, by type as producers counted them; events of producers "
        "that keep no count (a raw XADD) and dead letters replayed are type other.",
        labels=["workspace", "type"],
    )
    backlog = GaugeMetricFamily("cio_fleet_backlog_events", "Events waiting in the streams.", labels=["workspace"])
    age = GaugeMetricFamily(
        "cio_fleet_oldest_event_age_seconds", "Age of the oldest waiting event (0 when none).", labels=["workspace"]
    )
    paused = GaugeMetricFamily(
        "cio_fleet_workspace_paused", "1 while the workspace is paused fleet-wide.", labels=["workspace", "reason"]
    )
    dead = GaugeMetricFamily("cio_fleet_dead_letter_entries", "Entries in the dead-letter queue.", labels=["workspace"])
    alarm = GaugeMetricFamily(
        "cio_fleet_dead_letter_alarm",
        "1 when the DLQ is past dlq_alarm_ratio of dlq_max_entries.",
        labels=["workspace"],
    )
    stranded_events = GaugeMetricFamily(
        "cio_fleet_stranded_events",
        "Events in the streams of a workspace that is not configured: no worker delivers them.",
        labels=["workspace"],
    )
    for workspace, count in sorted({**dict.fromkeys(states, 0), **(stranded or {})}.items()):
        stranded_events.add_metric([workspace], count)
    for workspace, state in states.items():
        for event_type, count in enqueued_by_type(state).items():
            enqueued.add_metric([workspace, event_type], count)
        backlog.add_metric([workspace], state.backlog)
        oldest = state.oldest_entry_ms
        age.add_metric([workspace], max(0.0, (now_ms - oldest) / 1000) if oldest is not None else 0.0)
        paused.add_metric([workspace, "throttled"], int(state.throttled))
        paused.add_metric([workspace, "unauthorized"], int(state.unauthorized))
        dead.add_metric([workspace], state.dead_letters)
        alarm.add_metric([workspace], int(over_alarm(state.dead_letters, dlq_max_entries, dlq_alarm_ratio)))
    return [enqueued, backlog, age, paused, dead, alarm, stranded_events]


def enqueued_by_type(state: WorkspaceState) -> dict[str, int]:
    """Enqueued events by type: the producers' counts, the rest of the streams' total as ``other``."""
    counts = dict(state.enqueued_by_type)
    counts["other"] = counts.get("other", 0) + max(0, state.enqueued - sum(state.enqueued_by_type.values()))
    return counts


class RedisStateCollector(Collector):
    """Reads the fleet's Redis at scrape time: one pipelined round trip per scrape."""

    def __init__(
        self,
        redis: redis.Redis,
        prefix: str,
        workspaces: Mapping[str, int],
        dlq_max_entries: int,
        dlq_alarm_ratio: float,
    ) -> None:
        """Remember what to read.

        Args:
            redis: A client of the fleet's Redis.
            prefix: The fleet's key prefix.
            workspaces: Workspace name to its number of partitions.
            dlq_max_entries: ``Settings.dlq_max_entries``.
            dlq_alarm_ratio: ``Settings.dlq_alarm_ratio``.
        """
        self._redis = redis
        self._prefix = prefix
        self._workspaces = dict(workspaces)
        self._dlq_max_entries = dlq_max_entries
        self._dlq_alarm_ratio = dlq_alarm_ratio

    def describe(self) -> Iterable[Metric]:
        """The families' names without reading Redis (registration does no I/O)."""
        return [*state_families(0, {}, self._dlq_max_entries, self._dlq_alarm_ratio), _redis_up(True)]

    def collect(self) -> Iterator[Metric]:
        """Read Redis; when it does not answer, report ``cio_fleet_redis_up 0`` instead of failing the scrape."""
        try:
            strays = read_strays(self._redis, self._prefix)
            above = {ws: strays.pop(ws) for ws in list(strays) if ws in self._workspaces}
            now_ms, states = read_state(self._redis, self._prefix, self._workspaces, above)
            stranded = stream_lengths(self._redis, self._prefix, strays)
        except RedisError as exc:
            log.warning("metrics: Redis state unreadable: %s", type(exc).__name__)
            yield _redis_up(False)
            return
        yield from state_families(now_ms, states, self._dlq_max_entries, self._dlq_alarm_ratio, stranded)
        yield _redis_up(True)


def _redis_up(up: bool) -> GaugeMetricFamily:
    return GaugeMetricFamily("cio_fleet_redis_up", "1 when the last scrape could read Redis.", value=int(up))


def start_metrics_server(
    metrics: FleetMetrics, port: int, addr: str = "0.0.0.0", health: Health | None = None
) -> WSGIServer | None:
    """Serve ``/metrics`` of this process's registry (and ``/healthz`` when ``health`` is given) on a daemon thread.

    Args:
        metrics: The process's metrics.
        port: TCP port; 0 turns the endpoint off.
        addr: Address to bind (all interfaces by default, for Kubernetes scrapes).
        health: The process's health; ``/healthz`` (ready) and ``/livez`` (alive) answer 200 or 503, with JSON.

    Returns:
        The server (``shutdown()`` then ``server_close()`` stop it), or None when ``port`` is 0.

    Raises:
        OSError: The port cannot be bound.
    """
    if port == 0:
        return None
    if health is None:
        server, _thread = start_http_server(port, addr, registry=metrics.registry)
        return server
    app = with_health(make_wsgi_app(metrics.registry), health)
    httpd = make_server(addr, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=httpd.serve_forever, name="cio-fleet-metrics", daemon=True).start()
    return httpd


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape or probe."""

    def log_message(self, format: str, *args: Any) -> None:
        return


def with_health(metrics_app: WsgiApp, health: Health) -> WsgiApp:
    """A WSGI app answering ``/healthz`` and ``/livez`` from ``health``, everything else from ``metrics_app``."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if path not in ("/healthz", "/livez"):
            return metrics_app(environ, start_response)
        healthy, parts = health.report(live=path == "/livez")
        body = orjson.dumps(
            {"healthy": healthy, "parts": {p.name: {"healthy": p.healthy, "detail": p.detail} for p in parts}}
        )
        status = "200 OK" if healthy else "503 Service Unavailable"
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app
