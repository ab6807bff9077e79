"""The naive baseline: one Celery message per event, one ``/api/v2/entity`` request per operation.

This is how a first version is usually written: the producer ``send_task``s every raw event, the task maps it
with the same pure transform as cio-fleet and posts each operation on its own with httpx, retrying HTTP errors
with Celery's exponential backoff. No batching, no fleet-wide rate limit, no partitions (so no per-person order).

Worker: ``celery -A tests.benchmarks.naive.app worker --pool threads --queues {NAIVE_PREFIX}.naive``, with
``NAIVE_BROKER_URL``, ``NAIVE_PREFIX``, ``NAIVE_TRACK_URL``, ``NAIVE_SITE_ID`` and ``NAIVE_API_KEY`` set.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import httpx
from celery import Celery

from worker.mapping.transform import Deliver, TransformOptions, transform_raw

#: The task's name, used by the sending side.
TASK = "naive.deliver"


def queue_name(prefix: str) -> str:
    """The naive baseline's queue under a key prefix."""
    return f"{prefix}.naive"


def create_app(broker_url: str, prefix: str) -> Celery:
    """A Celery app on ``broker_url`` whose kombu bookkeeping keys live under ``prefix``."""
    app = Celery("naive", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue=queue_name(prefix),
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "unacked_key": f"{prefix}.unacked",
            "unacked_index_key": f"{prefix}.unacked_index",
            "unacked_mutex_key": f"{prefix}.unacked_mutex",
        },
    )
    return app


def send_events(app: Celery, prefix: str, raw_events: Iterable[str]) -> int:
    """Queue one task per raw event JSON; returns how many."""
    count = 0
    with app.producer_or_acquire() as producer:
        for raw in raw_events:
            app.send_task(TASK, args=[raw], queue=queue_name(prefix), producer=producer)
            count += 1
    return count


def _worker_app() -> Celery:
    app = create_app(os.environ.get("NAIVE_BROKER_URL", "redis://127.0.0.1:6379/0"), os.environ["NAIVE_PREFIX"])
    http = httpx.Client(
        base_url=os.environ.get("NAIVE_TRACK_URL", "http://127.0.0.1:8899"),
        auth=(os.environ.get("NAIVE_SITE_ID", ""), os.environ.get("NAIVE_API_KEY", "")),
        timeout=10.0,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
    )
    options = TransformOptions()

    @app.task(  # type: ignore[untyped-decorator]  # Celery ships no type hints
        name=TASK,
        autoretry_for=(httpx.HTTPError,),
        retry_backoff=1,
        retry_backoff_max=30,
        retry_jitter=True,
        max_retries=20,
    )
    def deliver(raw: str) -> None:
        outcome = transform_raw(raw, options)
        if not isinstance(outcome, Deliver):
            return
        for body in outcome.encoded:
            response = http.post("/api/v2/entity", content=body, headers={"Content-Type": "application/json"})
            response.raise_for_status()

    return app


app = _worker_app() if "NAIVE_PREFIX" in os.environ else None
