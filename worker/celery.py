"""The Celery app (``celery -A worker worker``) and the worker's lifecycle signals.

Settings load here, once, when the worker starts; a bad configuration stops it with one clear message.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Final

from celery import Celery, bootsteps, signals

from producers.connect import is_cluster
from producers.keys import drain_queue
from worker import runtime
from worker.broker import celery_options
from worker.ops.health import CONSUMER_BEAT_S, CONSUMER_STALE_S
from worker.settings import DEFAULT_WORKER_THREADS, ConfigError, Settings, load_settings
from worker.store.slots import check_startup

log = logging.getLogger("cio_fleet.worker")


def _load() -> Settings:
    try:
        settings = load_settings()
        check_startup(settings)
        return settings
    except ConfigError as exc:
        print(f"cio-fleet: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def create_app(settings: Settings) -> Celery:
    """A Celery app configured for at-least-once delivery on its broker (Redis or RabbitMQ, ``worker.broker``)."""
    celery_app = Celery("cio_fleet", broker=settings.broker(), include=["worker.tasks"])
    celery_app.conf.update(
        # A task is acknowledged when it ends, and redelivered when its worker dies (RabbitMQ: at once, as its
        # connection closes; Redis: after the visibility timeout, though the sweeper kicks the partition first).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A task that raised was handled by the pipeline (its partition deferred); do not redeliver it too.
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_default_queue=drain_queue(settings.key_prefix),
        worker_pool="threads",
        worker_concurrency=DEFAULT_WORKER_THREADS,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        **celery_options(settings),
    )
    return celery_app


#: A sweeper loop that has not gone round for this long (or 5 sweep intervals, if longer) is unhealthy.
SWEEPER_STALE_S: Final = 30.0
#: A relay loop (a ``BRPOP`` of at most a second, or a pause of at most 5 s) that has not gone round for this long.
RELAY_STALE_S: Final = 30.0


class ConsumerBeat(bootsteps.StartStopStep):  # type: ignore[misc]
    """Beats the health check from the consumer's own timer while it consumes; marks it down when it stops."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer: Any = None

    def start(self, parent: Any) -> None:
        runtime.health.beat("consumer")
        self._timer = parent.timer.call_repeatedly(CONSUMER_BEAT_S, runtime.health.beat, ("consumer",))

    def stop(self, parent: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        runtime.health.down("consumer", "consumer stopped (broker connection lost, or shutting down)")


settings = _load()
app = create_app(settings)
runtime.health.watch("consumer", CONSUMER_STALE_S)
app.steps["consumer"].add(ConsumerBeat)
_sweeper: Any = None
_relay: Any = None


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    """Our logging, not Celery's (connecting this signal stops Celery from configuring its own)."""
    from worker.ops import celery_output
    from worker.ops.logs import configure_logging, register_secrets

    configure_logging(settings.log_format, settings.log_level)
    register_secrets(runtime.secrets(settings))
    celery_output.install(settings.log_format, settings.log_level)


# Configured once more here, as the app loads, so that warnings Celery emits before its setup_logging signal
# (such as running as root) are logged in the configured format too.
_setup_logging()


@signals.worker_init.connect
def _init_sentry(sender: Any = None, **_: Any) -> None:
    from worker.ops.observability import init_sentry

    runtime.set_concurrency(int(getattr(sender, "concurrency", 0) or app.conf.worker_concurrency))
    init_sentry(settings, runtime.secrets(settings))


@signals.worker_process_init.connect
def _after_fork(**_: Any) -> None:
    runtime.reset()


@signals.worker_ready.connect
def _start_background(**_: Any) -> None:
    global _sweeper
    from worker.broker import QueuedPartitions, broker_is_events_redis
    from worker.pipeline.sweeper import Sweeper
    from worker.tasks import kick

    deps = runtime.deps(settings)
    # The sweeper first: delivery machinery never depends on the metrics endpoint starting.
    client = runtime.redis_client(settings)
    _sweeper = Sweeper(settings, client, kick, runtime.identity(), queued=QueuedPartitions(settings, client))
    runtime.health.watch("sweeper", max(SWEEPER_STALE_S, 5 * settings.sweep_interval_s))
    _sweeper.on_round = lambda: runtime.health.beat("sweeper")
    _sweeper.start()
    if is_cluster(client):
        log.info("events on a Redis Cluster: the relay publishes the kicked partitions of the ready sets")
        _start_ready_relay()
    elif not broker_is_events_redis(settings, client):
        _start_relay()
    elif settings.relays_kicks:
        log.warning("CIO_BROKER_URL names the events Redis (same server and database): no relay, one queue")
    runtime.start_metrics(settings)
    log.info("worker ready", extra={"workspaces": len(settings.workspaces), "host": deps.host})


def _start_relay() -> None:
    """Publish the kicks producers leave in the events Redis to the broker (``worker.pipeline.relay``)."""
    global _relay
    from worker.pipeline.relay import Relay
    from worker.tasks import publish

    _relay = Relay(runtime.relay_client(settings), drain_queue(settings.key_prefix), publish)
    runtime.health.watch("relay", RELAY_STALE_S)
    _relay.on_round = lambda: runtime.health.beat("relay")
    _relay.start()


def _start_ready_relay() -> None:
    """On a Redis Cluster, publish the partitions producers mark ready as they wake it (``ReadyRelay``)."""
    global _relay
    from worker.pipeline.relay import ReadyRelay
    from worker.tasks import kick

    _relay = ReadyRelay(runtime.relay_client(settings), settings.key_prefix, settings.workspaces, kick)
    if _relay.groups:  # no workspace, no thread: nothing to watch
        runtime.health.watch("relay", RELAY_STALE_S)
    _relay.on_round = lambda: runtime.health.beat("relay")
    _relay.start()


@signals.worker_shutting_down.connect
def _stop(**_: Any) -> None:
    runtime.request_stop()
    _hand_back_parked()
    runtime.shutdown_watchdog(settings).start()
    for thread in (_relay, _sweeper):
        if thread is not None:
            thread.stop()


def _hand_back_parked() -> None:
    """Queue the partitions parked in this process again at once, for the rest of the fleet (a parked lease left
    behind would run out within seconds anyway)."""
    from worker.pipeline.drain import unpark
    from worker.tasks import kick

    deps = runtime.deps(settings)
    try:
        for name in settings.workspaces:
            for partition in unpark(deps, name, every=True):
                kick(name, partition)
    except Exception:
        log.exception("could not hand the parked partitions back; their leases run out in seconds")
