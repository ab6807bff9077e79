"""Issue 16: Redis operations, bytes and CPU per delivered event on the hot path, on one node and on clusters of 1
and 3 masters.

Run: ``.venv/bin/pytest tests/benchmarks/bench_redis_cost.py -s -o addopts=""`` (``-k single``, ``-k "cluster-3"``,
``-k "cluster-1"``).
Knobs: ``BENCH_EVENTS`` (50,000 realistic events), ``BENCH_WORKSPACES`` (6, spread over the masters by their hash
tags), ``BENCH_CONCURRENCY`` (the worker default).

The events Redis is private to the benchmark (a ``redis-server`` without persistence, the test cluster's three
masters, or a cluster of one master holding all 16384 slots, with one replica, as the 3-master one has), so ``INFO
commandstats``/``stats``/``cpu`` deltas count only this run; the Celery broker is the shared Redis on 6379
(``CIO_BROKER_URL``) in every case, so drain-task traffic is left out of the events Redis figures. The producer side
is the delta around ``enqueue_many``; the worker side is the delta from the worker's start to the last acceptance
and empty streams (it includes the worker's start-up, heartbeats, sweeps and backlog reads over that window: fixed
costs that weigh less per event the busier the worker is). Events/s is timed from the worker's registration to the
last acceptance. Redis 7 counts the commands a script runs in ``commandstats`` too (an ``evalsha`` of the enqueue
script is one ``evalsha`` plus its ``xadd``s). Only correctness is asserted.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.benchmarks.bench_pipeline import UNLIMITED_RPS, count_operations
from tests.benchmarks.conftest import env_int, report
from tests.benchmarks.producer_ab import realistic_events
from tests.conftest import TEST_REDIS_URL
from tests.e2e.conftest import Fleet, backlog, wait_for
from tests.support.fake_cio import FakeCioProcess, start_fake_cio_process
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import RedisServer
from worker.settings import DEFAULT_WORKER_THREADS

pytestmark = pytest.mark.timeout(1_800)


@dataclass
class EventsRedis:
    """The events Redis of one run: its URL and the ports of its masters (where ``INFO`` is read)."""

    kind: str
    url: str
    masters: list[int]


@pytest.fixture(params=["single", "cluster-1", "cluster-3"])
def events_redis(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventsRedis]:
    """A private single node (no persistence, like the cluster's nodes), a private cluster of one master and its
    replica, or the test cluster (3 masters + 3 replicas)."""
    if request.param == "cluster-3":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        yield EventsRedis("cluster", cluster.url, cluster.masters())
        return
    if request.param == "cluster-1":
        small = RedisCluster(tmp_path_factory.mktemp("one-master-cluster"), masters=1, replicas=1)
        small.start()
        try:
            yield EventsRedis("cluster", small.url, small.masters())
        finally:
            small.stop()
        return
    server = RedisServer(tmp_path_factory.mktemp("events-redis"))
    server.start()
    node = redis.Redis(port=server.port)
    node.config_set("appendonly", "no")
    node.close()
    try:
        yield EventsRedis("single", server.url, [server.port])
    finally:
        server.stop()


@pytest.fixture
def redis_url(events_redis: EventsRedis) -> str:
    """The events Redis of ``make_fleet``, ``key_prefix`` and ``redis_client``: the benchmark's private one."""
    return events_redis.url


def workspace_names() -> list[str]:
    return [f"ws{n}" for n in range(env_int("BENCH_WORKSPACES", 6))]


@pytest.fixture
def stand_in() -> Iterator[FakeCioProcess]:
    """The stand-in in its own process, one site per benchmark workspace, answering at once, not validating."""
    credentials = {f"site-{name}": f"key-{name}" for name in workspace_names()}
    with start_fake_cio_process(credentials=credentials, validate=False) as process:
        yield process


# --- reading INFO ------------------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """Counters of every master summed: calls per command, bytes in and out, CPU seconds (user + sys)."""

    calls: Counter[str]
    net_in: int
    net_out: int
    repl_out: int
    cpu_s: float

    def __sub__(self, before: Snapshot) -> Snapshot:
        calls = Counter({name: n - before.calls.get(name, 0) for name, n in self.calls.items()})
        return Snapshot(
            +calls,
            self.net_in - before.net_in,
            self.net_out - before.net_out,
            self.repl_out - before.repl_out,
            self.cpu_s - before.cpu_s,
        )


def snapshot(masters: list[int]) -> Snapshot:
    total = Snapshot(Counter(), 0, 0, 0, 0.0)
    for port in masters:
        node = redis.Redis(port=port, decode_responses=True)
        try:
            commands = node.info("commandstats")
            stats, cpu = node.info("stats"), node.info("cpu")
        finally:
            node.close()
        for name, figures in commands.items():
            total.calls[name.removeprefix("cmdstat_")] += int(figures["calls"])
        total.net_in += int(stats["total_net_input_bytes"])
        total.net_out += int(stats["total_net_output_bytes"])
        total.repl_out += int(stats.get("total_net_repl_output_bytes", 0))
        total.cpu_s += float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])
    return total


def per_event_rows(side: str, delta: Snapshot, events: int) -> list[tuple[str, Any]]:
    """The figures of one side per event: commands, the busiest command names, bytes, Redis CPU."""
    top = ", ".join(f"{name} {n / events:.3f}" for name, n in delta.calls.most_common(6))
    rows: list[tuple[str, Any]] = [
        (f"{side}: Redis commands per event", sum(delta.calls.values()) / events),
        (f"{side}: per command per event", top),
        (f"{side}: bytes in per event", delta.net_in / events),
        # total_net_output_bytes counts what a master sends its replicas too (Redis 7): left out here.
        (f"{side}: bytes out per event (clients)", (delta.net_out - delta.repl_out) / events),
        (f"{side}: Redis CPU per event (us)", delta.cpu_s * 1e6 / events),
    ]
    if delta.repl_out:
        rows.append((f"{side}: bytes to replicas per event", delta.repl_out / events))
    return rows


def accepted_total(stand_in: FakeCioProcess) -> int:
    return int(stand_in.client.stats()["accepted"])


def empty_streams(client: redis.Redis, prefix: str) -> bool:
    return all(backlog(client, prefix, name) == 0 for name in workspace_names())


def test_redis_cost_per_event_of_one_worker(
    events_redis: EventsRedis,
    stand_in: FakeCioProcess,
    make_fleet: Callable[..., Fleet],
    redis_client: redis.Redis,
    key_prefix: str,
    tmp_path: Path,
) -> None:
    total, concurrency = env_int("BENCH_EVENTS", 50_000), env_int("BENCH_CONCURRENCY", DEFAULT_WORKER_THREADS)
    names = workspace_names()
    workspaces = {
        name: {"site_id": f"site-{name}", "api_key": f"key-{name}", "track_url": stand_in.url}
        | {"rate_limit_rps": UNLIMITED_RPS}
        for name in names
    }
    fleet = make_fleet(workspaces, CIO_BROKER_URL=TEST_REDIS_URL)
    sample = realistic_events(total, people=5_000)
    share = -(-total // len(names))
    batches = {name: sample[n * share : (n + 1) * share] for n, name in enumerate(names)}
    operations = count_operations(sample)
    # Given the events enqueued by producers of every workspace, Redis counters read around it
    before = snapshot(events_redis.masters)
    started = time.perf_counter()
    for name, events in batches.items():
        with fleet.producer(name) as producer:
            for start in range(0, len(events), 5_000):
                chunk = events[start : start + 5_000]
                assert producer.enqueue_many(chunk).enqueued == len(chunk)
    enqueue_s = time.perf_counter() - started
    enqueued = snapshot(events_redis.masters)
    # When one worker process delivers them all
    fleet.start(1, concurrency=concurrency)
    started = time.perf_counter()  # once the worker has registered (its boot is not counted in events/s)
    wait_for(lambda: accepted_total(stand_in) >= operations, 900, f"{operations} accepted operations")
    wait_for(lambda: empty_streams(redis_client, key_prefix), 60, "empty streams")
    deliver_s = time.perf_counter() - started
    delivered = snapshot(events_redis.masters)
    fleet.stop()
    # Then every operation arrived once; and the figures are printed
    assert accepted_total(stand_in) == operations
    producer_side, worker_side = enqueued - before, delivered - enqueued
    masters = len(events_redis.masters)
    report(
        f"Redis cost per event ({events_redis.kind}, {masters} master(s)), {total:,} realistic events in"
        f" {len(names)} workspaces, 1 worker x{concurrency}, broker on 6379, load average {os.getloadavg()[0]:.2f}",
        [
            ("events", total),
            ("operations accepted", operations),
            ("producer enqueue_many (events/s)", total / enqueue_s),
            ("worker: registered to all delivered (events/s)", total / deliver_s),
            *per_event_rows("producer", producer_side, total),
            *per_event_rows("worker", worker_side, total),
            ("both: Redis CPU per event (us)", (producer_side.cpu_s + worker_side.cpu_s) * 1e6 / total),
        ],
    )
