"""The drain task: a thin adapter from Celery to ``worker.pipeline.drain.drain``."""

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

#: The longest countdown a task is queued with (far below the broker's visibility timeout). Longer waits are
#: left to the sweeper, which kicks the partition when its retry timer (the lease TTL) runs out.
MAX_COUNTDOWN_S: Final = 60.0


def kick(workspace: str, partition: int, countdown: float | None = None) -> None:
    """Queue a drain task for a partition (whose lease is ``kicked``, but for a retry timer's ``countdown``).

    When the task cannot be queued, the ``kicked`` lease is dropped, so that the sweeper kicks the partition as
    soon as the broker is back (if Redis cannot be reached for that either, the sweeper finds the lost kick later).
    """
    try:
        drain.apply_async((workspace, partition), queue=drain_queue(settings.key_prefix), countdown=countdown)
    except Exception:
        with contextlib.suppress(redis.RedisError):
            runtime.deps(settings).store.forget_kick(workspace, partition)
        raise


@app.task(name=DRAIN_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True, throws=(PermanentError,))
def drain(workspace: str, partition: int) -> str:
    """Drain one partition for one time slice, then queue what comes next."""
    result = pipeline.drain(runtime.deps(settings), workspace, int(partition))
    for target, countdown in result.kicks(partition, MAX_COUNTDOWN_S):
        kick(workspace, target, countdown=countdown)
    return result.action
