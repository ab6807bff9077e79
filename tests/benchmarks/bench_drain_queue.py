"""The length of the drain queue while a backlog drains with too few threads.

One worker with 2 threads (``BENCH_THREADS``) drains 16 busy partitions; Customer.io answers in 150 ms, batches
hold 5 events and a drain slice lasts 1 s, so a drain task waits about 8 s in the queue for a thread. The length
of the Celery queue list ``{prefix}.drain`` (LLEN) is sampled every 50 ms until the backlog is gone. By design it
never exceeds the partitions with events (one queued task each, plus one in progress per thread).

Run: ``/work/venv/bin/pytest tests/benchmarks/bench_drain_queue.py -s -o addopts=""`` (about 50 s).
Knobs: ``BENCH_EVENTS`` (3,200), ``BENCH_THREADS`` (2), ``BENCH_SLICE_S`` (1).
"""

from __future__ import annotations

import threading
import time

import pytest

from producers.keys import drain_queue
from tests.benchmarks.conftest import WORKSPACE, env_float, env_int, report, track_event, workspace_options
from tests.e2e.conftest import backlog, wait_for

pytestmark = pytest.mark.timeout(3_600)

PARTITIONS = 16
#: Seconds between two printed points of the queue's trajectory.
STEP_S = 5.0


def test_the_drain_queue_stays_within_the_partitions_under_a_backlog(stand_in, make_fleet, redis_client, key_prefix):
    events = env_int("BENCH_EVENTS", 3_200)
    threads = env_int("BENCH_THREADS", 2)
    slice_s = env_float("BENCH_SLICE_S", 1.0)
    # Given one worker with few threads for 16 partitions, and a slow Customer.io
    stand_in.client.set_faults([{"latency_ms": 150}])
    fleet = make_fleet(
        workspace_options(stand_in.url, partitions=PARTITIONS),
        CIO_BATCHING__MAX_EVENTS="5",
        CIO_WORKSPACE_MAX_SHARE="1",
        CIO_DRAIN_SLICE_S=str(slice_s),
    )
    fleet.start(1, concurrency=threads)
    samples: list[tuple[float, int, int]] = []
    done = threading.Event()
    start = time.monotonic()

    def sample() -> None:
        while not done.wait(0.05):
            samples.append(
                (
                    time.monotonic() - start,
                    int(redis_client.llen(drain_queue(key_prefix))),
                    backlog(redis_client, key_prefix, WORKSPACE, PARTITIONS),
                )
            )

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # When a backlog drains
    with fleet.producer(WORKSPACE, partitions=PARTITIONS) as producer:
        producer.enqueue_many([track_event(n, people=PARTITIONS * 50) for n in range(events)])
    wait_for(lambda: backlog(redis_client, key_prefix, WORKSPACE, PARTITIONS) == 0, 600, "the backlog to drain")
    done.set()
    sampler.join()
    fleet.stop()
    # Then the queue's length over time is printed (every event arrived: the streams are empty)
    lengths = [length for _, length, _ in samples]
    report(
        f"drain queue under a backlog: 1 worker x{threads}, {PARTITIONS} partitions, {events:,} events, "
        f"150 ms answers, {slice_s:g} s slices",
        [
            ("queue length: max", max(lengths)),
            ("queue length: mean", sum(lengths) / len(lengths)),
            ("seconds to drain", samples[-1][0]),
        ],
    )
    print("  t (s)  queued tasks  waiting events")
    for mark in range(0, int(samples[-1][0]) + 1, int(STEP_S)):
        at, length, waiting = next(point for point in samples if point[0] >= mark)
        print(f"  {at:5.1f}  {length:12d}  {waiting:14,d}")
    assert backlog(redis_client, key_prefix, WORKSPACE, PARTITIONS) == 0
