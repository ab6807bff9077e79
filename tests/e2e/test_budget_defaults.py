"""Issue 12, the budget with defaults: a workspace configured with nothing but its credentials keeps enough batches
in flight at once for its whole rate limit at slow answers (a behaviour, counted by the stand-in; the throughput it
gives is a figure of ``tests/benchmarks/bench_ratelimited.py``)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import standin_workspaces, wait_for
from worker.settings import DEFAULT_RATE_LIMIT_RPS, DEFAULT_WORKER_THREADS, default_partitions

pytestmark = pytest.mark.e2e

#: The old default: one batch in flight per partition, 16 partitions.
OLD_DEFAULT_PARTITIONS = 16


def test_a_workspace_with_defaults_keeps_a_batch_in_flight_on_most_of_its_partitions_at_once(stand_in, make_fleet):
    # Given a workspace with its credentials only (100 requests/s: the default count of partitions), one worker
    # process with the default threads, and a Customer.io that answers after 3 s
    partitions = default_partitions(DEFAULT_RATE_LIMIT_RPS)
    assert partitions > 2 * OLD_DEFAULT_PARTITIONS
    stand_in.set_faults([{"latency_ms": 3000}])
    fleet = make_fleet(standin_workspaces(stand_in.url, "a"))
    fleet.start(1, concurrency=DEFAULT_WORKER_THREADS)
    # When a backlog of several batches per partition is enqueued
    with fleet.producer("wsa", backlog_cap=None) as producer:
        for start in range(0, 40_000, 5_000):
            events = [
                {"type": "track", "userId": f"person-{n % 3_000}", "event": "Step", "messageId": f"m{n}"}
                for n in range(start, start + 5_000)
            ]
            assert producer.enqueue_many(events).enqueued == len(events)
    # Then three quarters of its partitions or more have a request in flight at the same time (the old default
    # allowed 16 at most; at 100 requests/s and 500 ms answers the budget needs about 55)
    wait_for(
        lambda: stand_in.stats()["max_in_flight"] >= partitions * 3 // 4,
        90,
        f"{partitions * 3 // 4} requests in flight at once",
    )
