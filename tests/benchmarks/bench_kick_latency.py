"""Issue 16: how long the first event of an idle partition takes from ``enqueue`` to Customer.io on a Redis Cluster.

Run: ``.venv/bin/pytest tests/benchmarks/bench_kick_latency.py -s -o addopts=""``.
Knobs: ``BENCH_ROUNDS`` (40 events, one at a time), ``BENCH_SWEEP_INTERVAL_S`` (the default, 2 s).

The events are on the test cluster (3 masters + 3 replicas), the broker is the shared Redis on 6379
(``CIO_BROKER_URL``), one worker process delivers to the stand-in. Each round waits until the partition it uses
has no lease (no drainer is parked on it, so the event needs a kick), enqueues one event and times it until the
stand-in accepted it. Before the ready relay, the kick reached the broker at the worker's next sweep (up to one
sweep interval); with it, within milliseconds. Only correctness is asserted.
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from producers.keys import lease_key
from producers.wire import partition_for
from tests.benchmarks.conftest import SITE_ID, WORKSPACE, env_float, env_int, report, workspace_options
from tests.conftest import TEST_REDIS_URL
from tests.e2e.conftest import Fleet, wait_for
from tests.support.fake_cio import FakeCioProcess
from tests.support.redis_cluster import RedisCluster

pytestmark = pytest.mark.timeout(900)

#: The workspace's partitions: each round uses the next one, so a drainer parked on the last one is not reused.
PARTITIONS = 16


@pytest.fixture
def redis_url(redis_cluster: RedisCluster) -> str:
    """The events Redis of ``make_fleet``, ``key_prefix`` and ``redis_client``: the test cluster."""
    return redis_cluster.url


def accepted(stand_in: FakeCioProcess) -> int:
    return int(stand_in.client.stats()["accepted"])


def idle(client: redis.Redis, lease: str) -> bool:
    return client.exists(lease) == 0


def event_of(partition: int, number: int) -> dict[str, Any]:
    """A track event of a person whose events go to ``partition``."""
    person = next(
        f"p{partition}-{n}"
        for n in range(10_000)
        if partition_for({"userId": f"p{partition}-{n}"}, PARTITIONS) == partition
    )
    return {"type": "track", "userId": person, "event": "Latency", "messageId": f"latency-{number}"}


def test_kick_to_delivery_latency_on_a_redis_cluster(
    stand_in: FakeCioProcess, make_fleet: Callable[..., Fleet], redis_client: redis.Redis, key_prefix: str
) -> None:
    rounds, sweep_s = env_int("BENCH_ROUNDS", 40), env_float("BENCH_SWEEP_INTERVAL_S", 2.0)
    fleet = make_fleet(workspace_options(stand_in.url, partitions=PARTITIONS), CIO_BROKER_URL=TEST_REDIS_URL)
    fleet.start(1, concurrency=4, CIO_SWEEP_INTERVAL_S=str(sweep_s))
    latencies: list[float] = []
    with fleet.producer(WORKSPACE, partitions=PARTITIONS) as producer:
        for number in range(rounds):
            partition = number % PARTITIONS
            event = event_of(partition, number)
            lease = lease_key(key_prefix, WORKSPACE, partition)
            wait_for(functools.partial(idle, redis_client, lease), 30, "the partition to be idle")
            # When one event is enqueued on an idle partition, then it is timed until the stand-in accepted it
            started = time.perf_counter()
            assert producer.enqueue_many([event]).enqueued == 1
            while accepted(stand_in) < number + 1:
                time.sleep(0.002)
            latencies.append(time.perf_counter() - started)
    fleet.stop()
    assert accepted(stand_in) == rounds
    assert sorted(op["operation"]["id"] for op in stand_in.client.accepted(SITE_ID)) == sorted(
        f"latency-{n}" for n in range(rounds)
    )
    ms = sorted(latency * 1000 for latency in latencies)
    report(
        f"Kick to delivery on a Redis Cluster (3 masters), {rounds} events one at a time, 1 worker,"
        f" sweep every {sweep_s:g} s, broker on 6379, load average {os.getloadavg()[0]:.2f}",
        [
            ("median (ms)", statistics.median(ms)),
            ("p90 (ms)", ms[int(0.9 * (len(ms) - 1))]),
            ("min (ms)", ms[0]),
            ("max (ms)", ms[-1]),
        ],
    )
