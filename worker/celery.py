"""The Celery app (``celery -A worker worker``) and the worker's lifecycle signals.

Settings load here, once, when the worker starts; a bad configuration stops it with one clear message.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Final

from celery import Celery, bootsteps, signals

from producers.keys import drain_queue, unacked_index_key, unacked_key, unacked_mutex_key
from worker import runtime
from worker.ops.health import CONSUMER_BEAT_S, CONSUMER_STALE_S
from worker.settings import ConfigError, Settings, load_settings
from worker.store.slots import check_startup

log = logging.getLogger("cio_fleet.worker")

#: Longer than any task: a task runs one time slice plus one request.
VISIBILITY_TIMEOUT_S: Final = 3_600
#: The broker transport (``worker/broker.py``).
BROKER_TRANSPORT: Final = "worker.broker:Transport"


def _load() -> Settings:
    try:
        settings = load_settings()
        check_startup(settings, needs_broker=True)
        return settings
    except ConfigError as exc:
        print(f"cio-fleet: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def create_app(settings: Settings) -> Celery:
    """A Celery app configured for at-least-once delivery on Redis."""
    celery_app = Celery("cio_fleet", broker=settings.celery_broker_url(), include=["worker.tasks"])
    celery_app.conf.update(
        # kombu's Redis transport with a fix: a Redis restart with drain tasks in flight must not end the worker.
        broker_transport=BROKER_TRANSPORT,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A task that raised was handled by the pipeline (its partition deferred); do not redeliver it too.
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
            # Unacknowledged drain tasks are kept under the fleet's own prefix, so fleets sharing a Redis stay apart.
            "unacked_key": unacked_key(settings.key_prefix),
            "unacked_index_key": unacked_index_key(settings.key_prefix),
            "unacked_mutex_key": unacked_mutex_key(settings.key_prefix),
        },
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_default_queue=drain_queue(settings.key_prefix),
        worker_pool="threads",
        worker_concurrency=32,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return celery_app


#: A sweeper loop that has not gone round for this long (or 5 sweep intervals, if longer) is unhealthy.
SWEEPER_STALE_S: Final = 30.0


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
    from worker.pipeline.sweeper import Sweeper
    from worker.tasks import kick

    deps = runtime.deps(settings)
    # The sweeper first: delivery machinery never depends on the metrics endpoint starting.
    _sweeper = Sweeper(settings, runtime.redis_client(settings), kick, runtime.identity())
    runtime.health.watch("sweeper", max(SWEEPER_STALE_S, 5 * settings.sweep_interval_s))
    _sweeper.on_round = lambda: runtime.health.beat("sweeper")
    _sweeper.start()
    runtime.start_metrics(settings)
    log.info("worker ready", extra={"workspaces": len(settings.workspaces), "host": deps.host})


@signals.worker_shutting_down.connect
def _stop(**_: Any) -> None:
    runtime.request_stop()
    _hand_back_parked()
    runtime.shutdown_watchdog(settings).start()
    if _sweeper is not None:
        _sweeper.stop()


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
