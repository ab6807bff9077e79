"""Throughput of one workspace against a slow, rate-limited Customer.io, and the naive baseline in the same conditions.

The stand-in answers every API request after 150 ms and answers 429 beyond 100 requests per second; the workspace
is configured with ``rate_limit_rps = 100``. The ceiling is 100 requests/s x 200 events = 20,000 events/s.

Run: ``/work/venv/bin/pytest tests/benchmarks/bench_ratelimited.py -s -o addopts=""``.
Knobs: ``BENCH_EVENTS`` (300,000), ``BENCH_PARTITIONS`` (32), ``BENCH_CONCURRENCY`` (32, the naive worker's threads),
``BENCH_WINDOW_S`` (10), ``BENCH_NAIVE_EVENTS`` (5,000), ``BENCH_NAIVE_WINDOW_S`` (15); the fleet layouts are
``LAYOUTS`` (``-k 3x16`` picks one).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from tests.benchmarks.conftest import (
    WORKSPACE,
    Throughput,
    count_in_window,
    enqueue_bulk,
    env_int,
    naive_env,
    report,
    start_naive_worker,
    track_event,
    watch_throughput,
    workspace_options,
)
from tests.benchmarks.naive.app import create_app, send_events
from tests.e2e.conftest import Fleet, backlog, wait_for
from tests.support.fake_cio import FakeCioProcess
from worker.local.localfleet import stop_worker

pytestmark = pytest.mark.timeout(3_600)

#: The stand-in's behaviour: Customer.io's documented limit, and a slow answer.
SLOW_AND_LIMITED = [{"latency_ms": 150, "rate_limit_rps": 100}]


def describe(name: str, result: Throughput) -> list[tuple[str, object]]:
    return [
        (f"{name}: events/s", result.rate),
        (f"{name}: requests/s", result.requests / result.seconds),
        (f"{name}: events per request", result.events / max(1, result.requests)),
        (f"{name}: 429 answers", result.statuses.get("429", 0)),
        (f"{name}: answers by status", str(result.statuses)),
    ]


#: Fleet layouts: (worker processes, threads each, CIO_WORKSPACE_MAX_SHARE or "" for the default of 0.75).
LAYOUTS = [
    pytest.param(1, 32, "", id="1x32-default-share"),
    pytest.param(3, 16, "", id="3x16-default-share"),
]


@pytest.mark.parametrize(("workers", "concurrency", "max_drains"), LAYOUTS)
def test_rate_limited_throughput_of_one_workspace(
    stand_in: FakeCioProcess,
    make_fleet: Callable[..., Fleet],
    redis_client: redis.Redis,
    workers: int,
    concurrency: int,
    max_drains: str,
    key_prefix: str,
) -> None:
    events, partitions = env_int("BENCH_EVENTS", 300_000), env_int("BENCH_PARTITIONS", 32)
    # Given a slow stand-in that refuses more than 100 requests/s, and a backlog waiting before the fleet starts
    stand_in.client.set_faults(SLOW_AND_LIMITED)
    fleet = make_fleet(workspace_options(stand_in.url, rate_limit_rps=100, partitions=partitions))
    sample = [track_event(index, people=5_000) for index in range(events)]
    with fleet.producer(WORKSPACE, partitions=partitions, backlog_cap=None) as producer:
        enqueue_bulk(producer, sample)
    # When the fleet drains it: a steady window first, then everything
    overrides = {"CIO_WORKSPACE_MAX_SHARE": max_drains} if max_drains else {}
    fleet.start(workers, concurrency=concurrency, **overrides)
    steady = count_in_window(stand_in.client, env_int("BENCH_WINDOW_S", 10))
    whole = watch_throughput(stand_in.client, events, timeout_s=600)
    wait_for(lambda: backlog(redis_client, key_prefix, WORKSPACE, partitions) == 0, 30, "empty streams")
    # Then every event arrived; and the figures are printed
    report(
        f"rate-limited: 150 ms answers, 100 req/s limit; {workers} worker(s) x{concurrency}, {partitions} partitions, "
        f"workspace_max_share={max_drains or 0.75}",
        [
            ("events", events),
            *describe(f"cio-fleet, first {steady.seconds:.0f} s", steady),
            *describe("cio-fleet, whole drain", whole),
            ("share of the 20,000 events/s ceiling (steady)", f"{steady.rate / 20_000:.1%}"),
        ],
    )
    assert stand_in.client.stats()["accepted"] == events


def test_rate_limited_naive_baseline(stand_in: FakeCioProcess, redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    # Given the same slow, rate-limited stand-in
    stand_in.client.set_faults(SLOW_AND_LIMITED)
    sample = [track_event(index, people=5_000) for index in range(env_int("BENCH_NAIVE_EVENTS", 5_000))]
    # When the naive baseline runs for a fixed window; Then its figures are printed
    naive = run_naive(redis_url, key_prefix, stand_in, sample, tmp_path)
    report(
        f"rate-limited naive baseline: 1 worker x{env_int('BENCH_CONCURRENCY', 32)}",
        describe(f"naive baseline, {naive.seconds:.0f} s window", naive),
    )
    assert naive.events > 0


def run_naive(
    redis_url: str, prefix: str, stand_in: FakeCioProcess, sample: list[dict[str, Any]], tmp_path: Path
) -> Throughput:
    app = create_app(redis_url, prefix)
    try:
        send_events(app, prefix, (orjson.dumps(event).decode() for event in sample))
    finally:
        app.close()
    env = naive_env(redis_url, prefix, stand_in.url)
    process = start_naive_worker(env, env_int("BENCH_CONCURRENCY", 32), tmp_path / "naive.log")
    try:
        return count_in_window(stand_in.client, env_int("BENCH_NAIVE_WINDOW_S", 15))
    finally:
        stop_worker(process)
