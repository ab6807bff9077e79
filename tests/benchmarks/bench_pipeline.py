"""End-to-end figures of one worker process on this machine: throughput, latency, memory, and a naive baseline.

Run: ``/work/venv/bin/pytest tests/benchmarks/bench_pipeline.py -s -o addopts=""`` (``-k`` picks one).
Knobs: ``BENCH_EVENTS`` (200,000), ``BENCH_NAIVE_EVENTS`` (20,000), ``BENCH_CONCURRENCY`` (8),
``BENCH_PARTITIONS`` (16), ``BENCH_SHAPE`` (``small``: ``synthetic_events``; ``realistic``:
``producer_ab.realistic_events``, with context), ``BENCH_RATE`` (1,000/s), ``BENCH_LATENCY_S`` (20),
``BENCH_MEMORY_EVENTS`` (1,000,000), ``BENCH_BROKER`` (``redis``: the events Redis; ``amqp``: RabbitMQ on
127.0.0.1:5672, ``CIO_BROKER_URL``).
The stand-in runs in its own process, answers at once and does not validate. Only correctness is asserted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from tests.benchmarks.conftest import (
    WORKSPACE,
    Feeder,
    RssSampler,
    Throughput,
    cpu_s,
    enqueue_bulk,
    env_float,
    env_int,
    naive_env,
    paced_enqueue,
    percentile,
    report,
    start_naive_worker,
    track_event,
    watch_throughput,
    workspace_options,
)
from tests.benchmarks.naive.app import create_app, send_events
from tests.benchmarks.producer_ab import realistic_events
from tests.e2e.conftest import Fleet, backlog, wait_for
from tests.support.fake_cio import FakeCioProcess
from worker.local.examples import synthetic_events
from worker.local.localfleet import stop_worker
from worker.mapping.transform import Deliver, TransformOptions, transform

pytestmark = pytest.mark.timeout(3_600)

#: The workspace's rate limit: far above what one machine reaches, so it never applies.
UNLIMITED_RPS = 100_000


def unlimited_fleet(make_fleet: Callable[..., Fleet], stand_in: FakeCioProcess) -> Fleet:
    broker = os.environ.get("BENCH_BROKER", "redis")
    partitions = env_int("BENCH_PARTITIONS", 16)
    return make_fleet(
        workspace_options(stand_in.url, rate_limit_rps=UNLIMITED_RPS, partitions=partitions), broker=broker
    )


def test_throughput_of_one_worker_against_the_naive_baseline(
    stand_in: FakeCioProcess,
    make_fleet: Callable[..., Fleet],
    redis_client: redis.Redis,
    redis_url: str,
    key_prefix: str,
    tmp_path: Path,
) -> None:
    events, naive_events = env_int("BENCH_EVENTS", 200_000), env_int("BENCH_NAIVE_EVENTS", 20_000)
    concurrency = env_int("BENCH_CONCURRENCY", 8)
    # Given the events waiting in Redis before the worker starts
    fleet = unlimited_fleet(make_fleet, stand_in)
    sample = bench_sample(events)
    operations, naive_operations = count_operations(sample), count_operations(sample[:naive_events])
    with fleet.producer(WORKSPACE, partitions=env_int("BENCH_PARTITIONS", 16)) as producer:
        enqueue_rate = enqueue_bulk(producer, sample)
    # When one worker process drains them
    (process,) = fleet.start(1, concurrency=concurrency)
    cpu_at_first: list[float] = []
    on_first = lambda: cpu_at_first.append(cpu_s(process.pid))  # noqa: E731
    ours = watch_throughput(stand_in.client, operations, timeout_s=600, on_first=on_first)
    cpu_window = cpu_s(process.pid) - cpu_at_first[0]
    wait_for(lambda: backlog(redis_client, key_prefix, WORKSPACE) == 0, 30, "empty streams")
    fleet.stop()
    # And the naive baseline delivers a share of the same events, one task and one request each
    stand_in.client.reset()
    naive = run_naive(redis_url, key_prefix, stand_in, sample[:naive_events], naive_operations, concurrency, tmp_path)
    # Then every event arrived; and the figures are printed
    report(
        f"throughput ({env_text('BENCH_SHAPE', 'small')} events), 1 worker process, threads pool x{concurrency},"
        f" {env_int('BENCH_PARTITIONS', 16)} partitions, stand-in in its own process",
        [
            ("events", events),
            ("operations", operations),
            ("producer enqueue_many (events/s)", enqueue_rate),
            ("cio-fleet (events/s)", ours.rate * events / operations),
            ("cio-fleet requests", ours.requests),
            ("worker CPU per event in the window (us)", cpu_window * 1e6 * operations / ours.events / events),
            ("cio-fleet events per request", events / max(1, ours.requests)),
            (f"naive baseline over {naive_events:,} events (events/s)", naive.rate * naive_events / naive_operations),
            ("naive requests", naive.requests),
            ("ratio cio-fleet / naive", ours.rate / naive.rate),
        ],
    )
    assert stand_in.client.stats()["accepted"] == naive_operations


def env_text(name: str, default: str) -> str:
    return os.environ.get(name, default)


def bench_sample(events: int) -> list[dict[str, Any]]:
    """``BENCH_SHAPE``'s events over 5,000 people: ``small`` synthetic ones, or ``realistic`` Segment-shaped ones."""
    if env_text("BENCH_SHAPE", "small") == "realistic":
        return realistic_events(events, people=5_000)
    return synthetic_events(events, people=5_000)


def count_operations(events: list[dict[str, Any]]) -> int:
    options = TransformOptions()
    return sum(len(outcome.operations) for e in events if isinstance(outcome := transform(e, options), Deliver))


def run_naive(
    redis_url: str,
    prefix: str,
    stand_in: FakeCioProcess,
    sample: list[dict[str, Any]],
    operations: int,
    concurrency: int,
    tmp_path: Path,
) -> Throughput:
    app = create_app(redis_url, prefix)
    try:
        send_events(app, prefix, (orjson.dumps(event).decode() for event in sample))
    finally:
        app.close()
    process = start_naive_worker(naive_env(redis_url, prefix, stand_in.url), concurrency, tmp_path / "naive.log")
    try:
        return watch_throughput(stand_in.client, operations, timeout_s=600)
    finally:
        stop_worker(process)


def test_latency_from_enqueue_to_acceptance_at_a_steady_rate(stand_in, make_fleet):
    rate, seconds = env_float("BENCH_RATE", 1_000), env_float("BENCH_LATENCY_S", 20)
    concurrency = env_int("BENCH_CONCURRENCY", 8)
    # Given one running worker, warmed up for two seconds
    fleet = unlimited_fleet(make_fleet, stand_in)
    fleet.start(1, concurrency=concurrency)
    with fleet.producer(WORKSPACE) as producer:
        warm = paced_enqueue(producer, rate, 2.0, tag="warm")
        stand_in.client.wait_for_accepted(len(warm), timeout=30)
        stand_in.client.reset()
        # When a paced producer enqueues at a steady rate, recording when each event was enqueued
        sent = paced_enqueue(producer, rate, seconds)
    accepted = stand_in.client.wait_for_accepted(len(sent), timeout=60)
    # Then every event arrived once; latency = the stand-in's arrival time minus the enqueue time
    latencies = [(r["received_at"] - sent[r["operation"]["id"]]) * 1000 for r in accepted]
    assert sorted(r["operation"]["id"] for r in accepted) == sorted(sent)
    report(
        f"latency enqueue -> accepted, {rate:,.0f} events/s for {seconds:.0f} s, 1 worker x{concurrency}",
        [
            ("events", len(latencies)),
            ("p50 (ms)", percentile(latencies, 50)),
            ("p90 (ms)", percentile(latencies, 90)),
            ("p99 (ms)", percentile(latencies, 99)),
            ("max (ms)", max(latencies)),
            ("requests", stand_in.client.stats()["requests"]),
        ],
    )


def test_worker_memory_stays_flat_over_a_million_events(stand_in, make_fleet, redis_client, key_prefix):
    total, concurrency = env_int("BENCH_MEMORY_EVENTS", 1_000_000), env_int("BENCH_CONCURRENCY", 8)
    # Given one running worker whose resident memory is sampled every second
    fleet = unlimited_fleet(make_fleet, stand_in)
    (process,) = fleet.start(1, concurrency=concurrency)
    with fleet.producer(WORKSPACE, backlog_cap=None) as producer, RssSampler(process.pid) as sampler:
        # When a feeder keeps up to 100,000 events waiting until it has enqueued them all
        feeder = Feeder(producer, total, max_backlog=100_000, make=track_event).start()
        started = time.monotonic()
        result = watch_throughput(stand_in.client, total, timeout_s=3_600)
        elapsed = time.monotonic() - started
        feeder.join(10)
    wait_for(lambda: backlog(redis_client, key_prefix, WORKSPACE) == 0, 30, "empty streams")
    # Then every event arrived; and the RSS figures are printed
    rss = sampler.summary()
    report(
        f"worker RSS over {total:,} events, 1 worker x{concurrency} (sampled every second)",
        [
            ("wall time (s)", elapsed),
            ("events/s (while a feeder enqueues on the same 2 cores)", result.rate),
            ("RSS min (MiB)", rss["min"]),
            ("RSS max (MiB)", rss["max"]),
            ("RSS last (MiB)", rss["last"]),
            ("RSS mean of second fifth (MiB)", rss["second_fifth"]),
            ("RSS mean of last fifth (MiB)", rss["last_fifth"]),
            ("grew (last fifth > second fifth + 10%)", str(rss["last_fifth"] > rss["second_fifth"] * 1.1)),
            ("samples", len(sampler.samples)),
        ],
    )
    print("  RSS trajectory (MiB):", sampler.trajectory())
    assert stand_in.client.stats()["accepted"] == total
