"""The composition root of a worker process: builds the pipeline's ports once, lazily, thread-safely."""

from __future__ import annotations

import logging
import os
import socket
import threading

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from producers.connect import sync_client
from worker.delivery import CustomerIOClient
from worker.ops.health import Health
from worker.ops.logs import settings_secrets
from worker.ops.metrics import FleetMetrics, start_metrics_server
from worker.pipeline.ports import Deps, Metrics, NullMetrics
from worker.pipeline.relay import BLOCK_S as RELAY_BLOCK_S
from worker.pipeline.shutdown import ShutdownWatchdog
from worker.pipeline.slots import WorkspaceSlots
from worker.settings import DEFAULT_WORKER_THREADS, Settings
from worker.store.partitions import PartitionStore
from worker.store.ratelimit import WorkspaceLimiter

log = logging.getLogger("cio_fleet.worker")

_lock = threading.Lock()
_deps: Deps | None = None
_events: redis.Redis | None = None
_metrics: FleetMetrics | None = None
_stopping = threading.Event()
#: What ``/healthz`` and ``/livez`` report: the Celery consumer's and the sweeper's beats.
health = Health()
#: Threads of this worker process, as Celery started it (``set_concurrency``).
_concurrency = DEFAULT_WORKER_THREADS
#: TCP keepalive of Redis connections: probe after 15 s idle, every 5 s, give up after 3 unanswered probes.
_KEEPALIVE = {"TCP_KEEPIDLE": 15, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}


def identity() -> str:
    """This process in the fleet: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def redis_client(settings: Settings) -> redis.Redis:
    """A Redis client (connection pool) for the data keys, used by drain threads, the sweeper and metrics.

    A black-holed Redis fails a command after ``redis_socket_timeout_s`` instead of hanging the thread, and a
    timeout is not retried (the command may have run; the caller decides). A connection lost before its answer is
    retried twice on a new connection, so a Redis restart costs no drain.
    """
    return sync_client(
        settings.redis_url.get_secret_value(),
        health_check_interval=30,
        socket_timeout=settings.redis_socket_timeout_s,
        socket_connect_timeout=settings.redis_connect_timeout_s,
        socket_keepalive=True,
        socket_keepalive_options=_keepalive_options(),
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.01), 2, supported_errors=(RedisConnectionError,)),
    )


def events_client(settings: Settings) -> redis.Redis:
    """The process's shared client of the events Redis, built on first use (kick records, ``worker.store.kicks``)."""
    global _events
    if _events is None:
        with _lock:
            if _events is None:
                _events = redis_client(settings)
    return _events


def relay_client(settings: Settings) -> redis.Redis:
    """A client of the events Redis (or Redis Cluster) for the relay's blocking ``BRPOP``: its socket timeout covers
    the wait. On a cluster, each relay thread holds a connection to the master of its slot."""
    return sync_client(
        settings.redis_url.get_secret_value(),
        socket_timeout=settings.redis_socket_timeout_s + RELAY_BLOCK_S,
        socket_connect_timeout=settings.redis_connect_timeout_s,
        socket_keepalive=True,
        socket_keepalive_options=_keepalive_options(),
    )


def _keepalive_options() -> dict[int, int]:
    """The keepalive socket options this platform knows (Linux has all three)."""
    return {getattr(socket, name): value for name, value in _KEEPALIVE.items() if hasattr(socket, name)}


def build_deps(settings: Settings, metrics: Metrics | None = None) -> Deps:
    """Everything the pipeline needs, for one process."""
    client = redis_client(settings)
    return Deps(
        settings=settings,
        store=PartitionStore(client, settings.key_prefix),
        limiter=WorkspaceLimiter(client, settings.key_prefix),
        client=CustomerIOClient(settings.http),
        metrics=metrics or NullMetrics(),
        host=socket.gethostname(),
        stopping=_stopping.is_set,
        wait_or_stop=_stopping.wait,
        slots=WorkspaceSlots(max(1, int(_concurrency * settings.workspace_max_share)), threads=_concurrency),
    )


def deps(settings: Settings) -> Deps:
    """The process's ports, built on first use."""
    global _deps
    if _deps is None:
        with _lock:
            if _deps is None:
                _deps = build_deps(settings, fleet_metrics(settings))
    return _deps


def fleet_metrics(settings: Settings) -> FleetMetrics:
    """The process's metrics, with a collector that reads the fleet's state from Redis at scrape time."""
    global _metrics
    if _metrics is None:
        _metrics = FleetMetrics()
        partitions = {name: ws.partitions for name, ws in settings.workspaces.items()}
        _metrics.prepare(partitions)
        _metrics.budget({name: ws.rate_limit_rps for name, ws in settings.workspaces.items()})
        _metrics.watch_redis(
            redis_client(settings), settings.key_prefix, partitions, settings.dlq_max_entries, settings.dlq_alarm_ratio
        )
    return _metrics


def start_metrics(settings: Settings) -> bool:
    """Serve ``/metrics`` on the configured port (0: off); False, with an error logged, when the port is taken.

    A port clash (a second worker process on the same host) never stops the worker: it delivers without
    ``/metrics`` and the log says which setting to change.
    """
    if not settings.metrics_port:
        return True
    try:
        start_metrics_server(fleet_metrics(settings), settings.metrics_port, health=health)
    except OSError as exc:
        log.error(
            "metrics endpoint not started: port %d cannot be bound (%s); this worker delivers without /metrics. "
            "Give each worker process on a host its own CIO_METRICS_PORT (or 0 to turn the endpoint off)",
            settings.metrics_port,
            exc.strerror or exc,
            extra={"metrics_port": settings.metrics_port},
        )
        return False
    return True


def secrets(settings: Settings) -> list[str]:
    """Every secret value of the configuration, for log and Sentry scrubbing."""
    return settings_secrets(settings)


def set_concurrency(threads: int) -> None:
    """Record how many threads this worker process runs (from Celery's ``worker_init``)."""
    global _concurrency
    _concurrency = max(1, threads)


def shutdown_watchdog(settings: Settings) -> ShutdownWatchdog:
    """The watchdog that releases this process's leases and exits when the shutdown grace runs out."""
    ports = deps(settings)

    def release(lease: tuple[str, int, str]) -> None:
        workspace, partition, token = lease
        ports.store.defer(workspace, partition, token, 1)

    return ShutdownWatchdog(settings.shutdown_grace_s, ports.leases, release)


def request_stop() -> None:
    """Tell every drainer of this process to stop after the batch in flight."""
    _stopping.set()


def reset() -> None:
    """Forget the process's ports (after a fork)."""
    global _deps, _metrics, _events
    _deps = None
    _metrics = None
    _events = None
    _stopping.clear()
