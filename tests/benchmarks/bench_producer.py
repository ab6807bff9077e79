"""Producer throughput and latency on the real Redis; prints figures, asserts none.

Run: ``/work/venv/bin/pytest tests/benchmarks/bench_producer.py -s -o addopts=""``.
Targets: ``enqueue_many`` ≥ 100,000 events/s; one ``track`` call p50 ≤ 0.3 ms.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator

import pytest

from producers import AsyncProducer, Producer

WS = "bench"
EVENTS = 200_000
CALLS = 5_000
ROUNDS = 3


def track_events(count: int) -> list[dict[str, object]]:
    """Realistic track events: 10,000 people, a few properties and a context."""
    return [
        {
            "type": "track",
            "userId": f"user-{n % 10_000}",
            "event": "Order Completed",
            "properties": {"order_id": f"o-{n}", "total": n % 500 + 0.99, "currency": "EUR", "items": 3},
            "context": {"ip": "10.0.0.1", "library": {"name": "bench", "version": "1"}},
        }
        for n in range(count)
    ]


@pytest.fixture
def producer(redis_url: str, key_prefix: str) -> Iterator[Producer]:
    with Producer(redis_url, WS, key_prefix=key_prefix, partitions=16, backlog_cap=10_000_000) as made:
        yield made


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def test_enqueue_many_throughput(producer: Producer) -> None:
    events = track_events(EVENTS)
    rates = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        result = producer.enqueue_many(events)
        rates.append(result.enqueued / (time.perf_counter() - started))
    print(
        f"\nenqueue_many: {EVENTS:,} events x {ROUNDS} rounds, "
        f"median {statistics.median(rates):,.0f} events/s, best {max(rates):,.0f} (target >= 100,000)"
    )


def test_single_track_latency(producer: Producer) -> None:
    for n in range(200):  # warm up: connection, partition count, kicks
        producer.track(f"user-{n}", "Warm Up")
    latencies = []
    for n in range(CALLS):
        started = time.perf_counter()
        producer.track(f"user-{n % 1_000}", "Clicked", {"button": "buy", "n": n})
        latencies.append((time.perf_counter() - started) * 1_000)
    latencies.sort()
    print(
        f"\ntrack: {CALLS:,} calls, p50 {percentile(latencies, 0.5):.3f} ms, p99 {percentile(latencies, 0.99):.3f} ms, "
        f"max {latencies[-1]:.3f} ms (target p50 <= 0.3 ms)"
    )


def test_async_enqueue_many_throughput(redis_url: str, key_prefix: str) -> None:
    events = track_events(EVENTS // 2)

    async def main() -> float:
        async with AsyncProducer(redis_url, WS, key_prefix=key_prefix, partitions=16, backlog_cap=None) as producer:
            started = time.perf_counter()
            result = await producer.enqueue_many(events)
            return result.enqueued / (time.perf_counter() - started)

    print(f"\nAsyncProducer.enqueue_many: {EVENTS // 2:,} events, {asyncio.run(main()):,.0f} events/s")
