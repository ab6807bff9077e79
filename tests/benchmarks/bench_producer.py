"""Producer throughput, latency and cost per stage on the real Redis; prints figures, asserts none (but correctness).

Run: ``.venv/bin/pytest tests/benchmarks/bench_producer.py -s -o addopts=""``.
Targets (issue 17): ``enqueue_many`` ≥ 150,000 events/s; one ``track`` call p50 ≤ 0.15 ms, p99 ≤ 0.5 ms;
``AsyncProducer`` within 20 % of ``Producer``. Knobs: ``BENCH_PRODUCER_EVENTS`` (200,000), ``BENCH_PRODUCER_CALLS``
(5,000), ``BENCH_PRODUCER_ROUNDS`` (3).

The events are Segment-shaped as a web shop sends them (``producer_ab.realistic_events``): a type mix (60 % track
with a product list, 20 % page, 10 % identify, 10 % anonymous track), a full ``context`` (library, user agent,
locale, page), ISO timestamps, 5,000 people; about 530 bytes each once serialised. ``producer_ab.py`` compares
two code trees back to back.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from producers import AsyncProducer, Producer
from producers._chunk import Chunk, chunks, person_of
from producers._events import Stamps, encode_parts, find_problem, message_ids, now_iso
from tests.benchmarks.conftest import env_int
from tests.benchmarks.producer_ab import realistic_events, simple_events

WS = "bench"
EVENTS = env_int("BENCH_PRODUCER_EVENTS", 200_000)
CALLS = env_int("BENCH_PRODUCER_CALLS", 5_000)
ROUNDS = env_int("BENCH_PRODUCER_ROUNDS", 3)


@pytest.fixture
def producer(redis_url: str, key_prefix: str) -> Iterator[Producer]:
    with Producer(redis_url, WS, key_prefix=key_prefix, partitions=16, backlog_cap=10_000_000) as made:
        yield made


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def timed(run: Callable[[], int]) -> tuple[float, float]:
    """Events per second (wall) and CPU µs per event of this process, for ``run`` returning its event count."""
    wall, cpu = time.perf_counter(), time.process_time()
    count = run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return count / wall, cpu / count * 1e6


@pytest.mark.parametrize("kind", ["realistic", "simple"])
def test_enqueue_many_throughput(producer: Producer, kind: str) -> None:
    events = realistic_events(EVENTS) if kind == "realistic" else simple_events(EVENTS)
    producer.enqueue_many(events[:2_000])  # warm up: connection, partition count, script
    figures = [timed(lambda: producer.enqueue_many(events).enqueued) for _ in range(ROUNDS)]
    assert producer.backlog() == 2_000 + EVENTS * ROUNDS
    print(
        f"\nenqueue_many: {EVENTS:,} {kind} events x {ROUNDS} rounds, median "
        f"{statistics.median(rate for rate, _ in figures):,.0f} events/s (best {max(r for r, _ in figures):,.0f}), "
        f"CPU {statistics.median(cpu for _, cpu in figures):.2f} us/event (target >= 150,000 events/s)"
    )


def test_single_track_latency(producer: Producer) -> None:
    events = realistic_events(CALLS)
    for n in range(200):  # warm up: connection, partition count, kicks
        producer.track(f"user-{n}", "Warm Up")
    latencies = []
    cpu = time.process_time()
    for event in events:
        user, properties = event.get("userId", "u"), event.get("properties")
        started = time.perf_counter()
        producer.track(user, "Order Completed", properties, context=event["context"], timestamp=event["timestamp"])
        latencies.append((time.perf_counter() - started) * 1_000)
    cpu_us = (time.process_time() - cpu) / CALLS * 1e6
    latencies.sort()
    print(
        f"\ntrack: {CALLS:,} calls, p50 {percentile(latencies, 0.5):.3f} ms, p99 {percentile(latencies, 0.99):.3f} ms, "
        f"max {latencies[-1]:.3f} ms, CPU {cpu_us:.1f} us/call (target p50 <= 0.15 ms, p99 <= 0.5 ms)"
    )


def test_async_enqueue_many_throughput(redis_url: str, key_prefix: str) -> None:
    events = realistic_events(EVENTS)

    async def main() -> list[tuple[float, float]]:
        async with AsyncProducer(redis_url, WS, key_prefix=key_prefix, partitions=16, backlog_cap=None) as producer:
            await producer.enqueue_many(events[:2_000])
            figures = []
            for _ in range(ROUNDS):
                wall, cpu = time.perf_counter(), time.process_time()
                count = (await producer.enqueue_many(events)).enqueued
                figures.append((count / (time.perf_counter() - wall), (time.process_time() - cpu) / count * 1e6))
            return figures

    figures = asyncio.run(main())
    print(
        f"\nAsyncProducer.enqueue_many: {EVENTS:,} realistic events x {ROUNDS} rounds, median "
        f"{statistics.median(rate for rate, _ in figures):,.0f} events/s, "
        f"CPU {statistics.median(cpu for _, cpu in figures):.2f} us/event"
    )


def test_cost_per_stage(producer: Producer) -> None:
    """CPU µs per event of each stage of ``enqueue_many``, without Redis.

    Each stage's output is dropped as it is made: keeping 20,000 fresh 500-byte objects alive costs a page fault each
    (``orjson.dumps`` kept in a list measures 3 µs, dropped 0.6 µs), which ``enqueue_many`` does not pay: its chunks
    are written into one buffer each, and freed once sent.
    """
    events = realistic_events(min(EVENTS, 20_000))
    stamps, new_id = Stamps.at(now_iso()), message_ids()
    layout = producer._resolve()

    def each(stage: Callable[[dict[str, Any]], object]) -> Callable[[], object]:
        return lambda: deque(map(stage, events), maxlen=0)

    def pushed() -> None:
        for start in range(0, len(events), 1_000):
            chunk = Chunk(start, stamps, new_id)
            deque(map(chunk.push, events[start : start + 1_000]), maxlen=0)

    stages: dict[str, Callable[[], object]] = {
        "checks (find_problem)": each(find_problem),
        "stamps + serialisation (encode_parts)": each(lambda event: encode_parts(event, stamps, new_id)),
        "  of which orjson.dumps": each(orjson.dumps),
        "  of which messageId": each(lambda _event: new_id()),
        "partitioning (person hash)": each(person_of),
        "Chunk.push (all of the above, into the body)": pushed,
        "chunks (push + bookkeeping + chunking)": lambda: deque(chunks(events), maxlen=0),
    }
    prepared = list(chunks(events))
    stages["script arguments (Layout.packed)"] = lambda: [layout.packed(chunk) for chunk in prepared]
    print(f"\ncost per stage, {len(events):,} realistic events, median of 5 (CPU us/event):")
    for name, run in stages.items():
        rounds = []
        for _ in range(5):
            cpu = time.process_time()
            run()
            rounds.append(time.process_time() - cpu)
        print(f"  {name:<46} {statistics.median(rounds) / len(events) * 1e6:6.2f}")
