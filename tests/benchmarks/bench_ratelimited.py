"""Throughput of one workspace against a slow, rate-limited Customer.io, and the naive baseline in the same conditions.

The stand-in answers every API request after 150 ms (``BENCH_LATENCY_MS``) and answers 429 beyond 100 requests per
second; the workspace is configured with ``rate_limit_rps = 100`` and nothing else: its partition count and the
workers' threads are the defaults (``worker.settings.default_partitions``, ``DEFAULT_WORKER_THREADS``). The ceiling
is 100 requests/s x 200 events = 20,000 events/s.

Run: ``.venv/bin/pytest tests/benchmarks/bench_ratelimited.py -s -o addopts=""``.
Knobs: ``BENCH_EVENTS`` (500,000: the steady window ends well before the backlog runs out), ``BENCH_LATENCY_MS``
(150), ``BENCH_PARTITIONS`` (the default; set it to compare), ``BENCH_THREADS`` (the default), ``BENCH_CONCURRENCY``
(32, the naive worker's threads), ``BENCH_WINDOW_S`` (10), ``BENCH_WARMUP_S`` (3: the steady window opens this long
after the first acceptance, once every worker is up), ``BENCH_NAIVE_EVENTS`` (5,000), ``BENCH_NAIVE_WINDOW_S``
(15), ``BENCH_SHAPE`` (``small``: track events of 5,000 people; ``realistic``: the Segment-shaped mix of
``producer_ab.py``, with context and ISO timestamps); the fleet layouts are ``LAYOUTS`` (``-k 3-processes``
picks one). Every run checks that each event arrived once, and each person's events in order.
"""

from __future__ import annotations

import itertools
import os
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from tests.benchmarks.conftest import (
    WORKSPACE,
    Throughput,
    count_in_window,
    count_in_windows,
    enqueue_bulk,
    env_int,
    naive_env,
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
from tests.support.fake_cio import FakeCioClient, FakeCioProcess
from worker.local.localfleet import stop_worker
from worker.settings import DEFAULT_WORKER_THREADS, default_partitions

pytestmark = pytest.mark.timeout(3_600)

#: The workspace's rate limit, and the stand-in's: Customer.io's documented limit.
LIMIT_RPS = 100


def slow_and_limited() -> list[dict[str, float]]:
    """The stand-in's behaviour: Customer.io's documented limit, and a slow answer."""
    return [{"latency_ms": float(os.environ.get("BENCH_LATENCY_MS", "150")), "rate_limit_rps": LIMIT_RPS}]


def describe(name: str, result: Throughput) -> list[tuple[str, object]]:
    return [
        (f"{name}: events/s", result.rate),
        (f"{name}: requests/s", result.requests / result.seconds),
        (f"{name}: events per request", result.events / max(1, result.requests)),
        (f"{name}: 429 answers", result.statuses.get("429", 0)),
        (f"{name}: answers by status", str(result.statuses)),
    ]


#: Fleet layouts: worker processes, each with the default threads pool and workspace_max_share.
LAYOUTS = [pytest.param(1, id="1-process"), pytest.param(3, id="3-processes")]


@pytest.mark.parametrize("workers", LAYOUTS)
def test_rate_limited_throughput_of_one_workspace(
    stand_in: FakeCioProcess,
    make_fleet: Callable[..., Fleet],
    redis_client: redis.Redis,
    workers: int,
    key_prefix: str,
) -> None:
    events, latency_ms = env_int("BENCH_EVENTS", 500_000), os.environ.get("BENCH_LATENCY_MS", "150")
    threads = env_int("BENCH_THREADS", DEFAULT_WORKER_THREADS)
    given = {"partitions": int(os.environ["BENCH_PARTITIONS"])} if "BENCH_PARTITIONS" in os.environ else {}
    partitions = given.get("partitions", default_partitions(LIMIT_RPS))
    # Given a slow stand-in that refuses more than 100 requests/s, a workspace with the default partitions, and a
    # backlog waiting before the fleet starts (written with the count the workers will publish)
    stand_in.client.set_faults(slow_and_limited())
    fleet = make_fleet(workspace_options(stand_in.url, rate_limit_rps=LIMIT_RPS, **given))
    sample = bench_events(events)
    with fleet.producer(WORKSPACE, partitions=partitions, backlog_cap=None) as producer:
        enqueue_bulk(producer, sample)
    # When the fleet drains it: a steady window first, then everything
    fleet.start(workers, concurrency=threads)
    window_s, warmup_s = env_int("BENCH_WINDOW_S", 10), env_int("BENCH_WARMUP_S", 3)
    first, steady = count_in_windows(stand_in.client, [(0, window_s), (warmup_s, warmup_s + window_s)])
    whole = watch_throughput(stand_in.client, events, timeout_s=600)
    wait_for(lambda: backlog(redis_client, key_prefix, WORKSPACE, partitions) == 0, 30, "empty streams")
    # Then every event arrived once, in order per person; and the figures are printed
    delivery = check_delivery(stand_in.client, events)
    report(
        f"rate-limited ({os.environ.get('BENCH_SHAPE', 'small')} events): {latency_ms} ms answers,"
        f" {LIMIT_RPS} req/s limit; {workers} worker process(es) x{threads} "
        f"threads, {partitions} partitions ({'set' if given else 'default'}), workspace_max_share 0.75 (default)",
        [
            ("events", events),
            *describe(f"cio-fleet, first {first.seconds:.0f} s", first),
            *describe(f"cio-fleet, steady: {window_s} s after a {warmup_s} s warm-up", steady),
            *describe("cio-fleet, whole drain", whole),
            (
                "share of the 20,000 events/s ceiling (first, steady)",
                f"{first.rate / 20_000:.1%}, {steady.rate / 20_000:.1%}",
            ),
            ("most requests in flight at once", stand_in.client.stats()["max_in_flight"]),
            *partition_cycle(fleet.logs()),
            *delivery,
        ],
    )
    assert stand_in.client.stats()["accepted"] == events


def partition_cycle(logs: str) -> list[tuple[str, object]]:
    """Where a partition's time goes, from the workers' ``batch sent`` lines: the request, and the rest of its cycle.

    A line is written when the answer arrives; the time from one answer of a partition to the start of its next
    request (the next answer less its duration) is spent settling, reading, transforming and waiting for the
    limiter, or for the next drain task to start.
    """
    answers: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for line in logs.splitlines():
        if '"batch sent"' not in line:
            continue
        record = orjson.loads(line)
        at = datetime.fromisoformat(record["ts"].replace("Z", "+00:00")).timestamp()
        answers[int(record["partition"])].append((at, float(record["duration_ms"]) / 1000))
    durations = [duration for seen in answers.values() for _, duration in seen]
    between = [
        later - duration - earlier
        for seen in answers.values()
        for (earlier, _), (later, duration) in itertools.pairwise(sorted(seen))
    ]
    if not durations or not between:
        return [("partition cycle", "no batch sent lines")]
    return [
        (
            "request duration p50 / p90 (ms)",
            f"{percentile(durations, 50) * 1000:.0f} / {percentile(durations, 90) * 1000:.0f}",
        ),
        (
            "partition idle between answer and next request p50 / p90 (ms)",
            f"{percentile(between, 50) * 1000:.0f} / {percentile(between, 90) * 1000:.0f}",
        ),
    ]


def bench_events(count: int) -> list[dict[str, Any]]:
    """``BENCH_SHAPE``'s events over 5,000 people, each with ``messageId`` ``b-<index>`` (the operation's ``id``)."""
    if os.environ.get("BENCH_SHAPE", "small") == "realistic":
        return [{**event, "messageId": f"b-{index}"} for index, event in enumerate(realistic_events(count))]
    return [track_event(index, people=5_000) for index in range(count)]


def check_delivery(client: FakeCioClient, events: int) -> list[tuple[str, object]]:
    """Each event accepted exactly once, and each person's in the order enqueued (asserted).

    Every event gives one operation. Operations that carry the event's ``messageId`` (all but identify) are
    checked one by one; the rest are counted.
    """
    seen: set[int] = set()
    last: dict[str, int] = defaultdict(lambda: -1)
    accepted = duplicates = inversions = 0
    for record in client.accepted():
        operation = record["operation"]
        accepted += 1
        if "id" not in operation:
            continue
        index = int(operation["id"].split("-", 1)[1])
        duplicates += index in seen
        seen.add(index)
        person = orjson.dumps(operation["identifiers"]).decode()
        inversions += index < last[person]
        last[person] = max(last[person], index)
    lost = max(events - accepted, 0)
    duplicates += max(accepted - events, 0)
    assert (lost, duplicates, inversions) == (0, 0, 0)
    return [("lost, duplicated, out of order", f"{lost}, {duplicates}, {inversions}")]


def test_rate_limited_naive_baseline(stand_in: FakeCioProcess, redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    # Given the same slow, rate-limited stand-in
    stand_in.client.set_faults(slow_and_limited())
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
