"""The HTTP intake: events/s in batches of 100 from concurrent clients (one intake process), p99 request latency at
a paced 2,000 events/s, and the CPU cost per event against ``Producer.enqueue_many``; prints figures, asserts none
(but that every accepted event is in Redis).

Run: ``.venv/bin/pytest tests/benchmarks/bench_intake.py -s -o addopts=""``.
Targets: >= 15,000 events/s; p99 <= 20 ms at 2,000 events/s.
Knobs: ``BENCH_INTAKE_CLIENTS`` (8), ``BENCH_INTAKE_REQUESTS`` (600 batches of 100), ``BENCH_INTAKE_PACED_S`` (10).
"""

from __future__ import annotations

import base64
import os
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from producers import Producer
from tests.benchmarks.bench_producer import percentile
from tests.benchmarks.conftest import env_int
from tests.benchmarks.producer_ab import realistic_events
from tests.integration.test_intake import KEY_A, intake_env
from tests.support.intake import Intake, running_intake

BATCH = 100
CLIENTS = env_int("BENCH_INTAKE_CLIENTS", 8)
REQUESTS = env_int("BENCH_INTAKE_REQUESTS", 600)
PACED_S = env_int("BENCH_INTAKE_PACED_S", 10)
HEADERS = {
    "Authorization": "Basic " + base64.b64encode(f"{KEY_A}:".encode()).decode(),
    "Content-Type": "application/json",
}


def batch_bodies(count: int) -> list[bytes]:
    events = realistic_events(count * BATCH)
    return [orjson.dumps({"batch": events[n * BATCH : (n + 1) * BATCH]}) for n in range(count)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def waiting(client, prefix: str) -> int:
    return sum(int(client.xlen(key)) for key in client.scan_iter(match=f"{prefix}:s:{{wsa}}:*", count=1000))


@pytest.fixture
def intake(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[Intake]:
    env = intake_env(redis_url, key_prefix, tmp_path, CIO_BACKLOG_CAP="100000000", CIO_LOG_LEVEL="WARNING")
    with running_intake(env, tmp_path / "intake.log") as server:
        yield server


def post_all(url: str, bodies: list[bytes], latencies: list[float], statuses: list[int]) -> None:
    with httpx.Client(base_url=url, headers=HEADERS, timeout=60) as client:
        for body in bodies:
            started = time.perf_counter()
            status = client.post("/v1/batch", content=body).status_code
            latencies.append(time.perf_counter() - started)
            statuses.append(status)


def test_intake_throughput_in_batches_of_100(intake: Intake, redis_client, key_prefix) -> None:
    bodies = batch_bodies(REQUESTS)
    post_all(intake.url, bodies[:20], [], [])  # warm-up: connections, the script, the layout
    warm = waiting(redis_client, key_prefix)
    latencies: list[float] = []
    statuses: list[int] = []
    shares = [bodies[n::CLIENTS] for n in range(CLIENTS)]
    cpu_before = cpu_seconds(intake.process.pid)
    started = time.perf_counter()
    threads = [threading.Thread(target=post_all, args=(intake.url, share, latencies, statuses)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(intake.process.pid) - cpu_before
    events = REQUESTS * BATCH
    assert statuses.count(200) == REQUESTS
    assert waiting(redis_client, key_prefix) - warm == events
    ordered = sorted(latencies)
    print(
        f"\nintake throughput: {events:,} events in {REQUESTS} batches of {BATCH} from {CLIENTS} clients: "
        f"{events / elapsed:,.0f} events/s (target >= 15,000); request p50 {percentile(ordered, 0.5) * 1e3:.1f} ms, "
        f"p99 {percentile(ordered, 0.99) * 1e3:.1f} ms; intake CPU {cpu / events * 1e6:.1f} us/event"
    )


def server_side_p99_ms(url: str) -> str:
    """The intake's own p99 request latency, as the upper bound of its histogram bucket (``/metrics``)."""
    buckets = []
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("cio_fleet_intake_request_seconds_bucket"):
            label = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(label), float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1]
    p99 = next(upper for upper, count in buckets if count >= 0.99 * total)
    return f"<= {p99 * 1e3:g} ms"


def test_intake_latency_at_2000_events_per_second(intake: Intake, redis_client, key_prefix) -> None:
    per_s = 2_000 // BATCH
    bodies = batch_bodies(per_s * PACED_S)
    post_all(intake.url, bodies[:5], [], [])
    latencies: list[float] = []
    statuses: list[int] = []
    with httpx.Client(base_url=intake.url, headers=HEADERS, timeout=60) as client:
        start = time.perf_counter()
        for n, body in enumerate(bodies):
            delay = start + n / per_s - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            statuses.append(client.post("/v1/batch", content=body).status_code)
            latencies.append(time.perf_counter() - sent)
    assert statuses.count(200) == len(bodies)
    ordered = sorted(latencies)
    print(
        f"\nintake latency at {per_s * BATCH:,} events/s for {PACED_S} s ({len(bodies)} requests of {BATCH}): "
        f"p50 {percentile(ordered, 0.5) * 1e3:.1f} ms, p90 {percentile(ordered, 0.9) * 1e3:.1f} ms, "
        f"p99 {percentile(ordered, 0.99) * 1e3:.1f} ms (target <= 20), max {ordered[-1] * 1e3:.1f} ms; "
        f"server-side p99 {server_side_p99_ms(intake.url)}"
    )


def test_cost_per_event_against_enqueue_many(redis_url: str, key_prefix: str) -> None:
    events = realistic_events(REQUESTS * BATCH)
    with Producer(redis_url, "wsa", key_prefix=key_prefix, partitions=16, backlog_cap=100_000_000) as producer:
        producer.enqueue_many(events[:1000])
        costs = []
        for n in range(0, len(events), BATCH):
            cpu_before = time.process_time()
            producer.enqueue_many(events[n : n + BATCH])
            costs.append(time.process_time() - cpu_before)
    print(
        f"\nProducer.enqueue_many in batches of {BATCH}: {statistics.fmean(costs) / BATCH * 1e6:.1f} us CPU/event "
        "(compare with the intake's CPU per event above)"
    )
