"""The drain task: a thin adapter from Celery to ``worker.pipeline.drain.drain``; and queueing it (``kick``)."""

from __future__ import annotations

import contextlib
from typing import Final

import redis

from producers.keys import drain_queue
from producers.wire import DRAIN_TASK
from worker import runtime
from worker.celery import app, settings
from worker.errors import PermanentError
from worker.pipeline import drain as pipeline
from worker.store.kicks import mark_published

#: The longest countdown a task is queued with (far below the broker's visibility timeout). Longer waits are
#: left to the sweeper, which kicks the partition when its retry timer (the lease TTL) runs out.
MAX_COUNTDOWN_S: Final = 60.0
#: On RabbitMQ, a drain task that could not reach the events Redis is queued again after this long.
REDIS_DOWN_RETRY_S: Final = 5.0


def publish(workspace: str, partition: int, countdown: float | None = None) -> None:
    """Send a drain task to the broker; on RabbitMQ, then record it in the partition's ``kicked`` lease.

    The record (``worker.store.kicks``) tells the sweeper the task is queued, since RabbitMQ cannot be read back.
    When it cannot be written, the sweeper queues a twin after ``KICK_GRACE_MS``, which does nothing.
    """
    drain.apply_async((workspace, partition), queue=drain_queue(settings.key_prefix), countdown=countdown)
    if settings.broker_kind == "amqp":
        with contextlib.suppress(redis.RedisError):
            mark_published(runtime.events_client(settings), settings.key_prefix, workspace, partition)


def kick(workspace: str, partition: int, countdown: float | None = None) -> None:
    """Queue a drain task for a partition (whose lease is ``kicked``, but for a retry timer's ``countdown``).

    When the task cannot be queued, the ``kicked`` lease is dropped, so that the sweeper kicks the partition as
    soon as the broker is back (if Redis cannot be reached for that either, the sweeper finds the lost kick later).
    """
    try:
        publish(workspace, partition, countdown)
    except Exception:
        with contextlib.suppress(redis.RedisError):
            runtime.deps(settings).store.forget_kick(workspace, partition)
        raise


@app.task(name=DRAIN_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True, throws=(PermanentError,))
def drain(workspace: str, partition: int) -> str:
    """Drain one partition for a time slice (or several, ``pipeline.drain``), then queue what comes next."""
    try:
        result = pipeline.drain(runtime.deps(settings), workspace, int(partition))
    except redis.RedisError:
        if settings.broker_kind == "amqp":
            # Its lease may still be a published kick, which the sweeper leaves alone: keep a task queued.
            with contextlib.suppress(Exception):
                publish(workspace, int(partition), REDIS_DOWN_RETRY_S)
        raise
    for target, countdown in result.kicks(partition, MAX_COUNTDOWN_S):
        kick(workspace, target, countdown=countdown)
    return result.action
