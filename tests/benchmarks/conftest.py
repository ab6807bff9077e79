"""Benchmark helpers: the stand-in in its own process, real worker processes, paced and bulk producers, probes.

Benchmarks are not part of the test suite; run one with
``/work/venv/bin/pytest tests/benchmarks/<file> -s -o addopts=""``. They print figures and never assert timings.
The e2e fixtures (``make_fleet``) are reused from ``tests.e2e.conftest``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from producers import Producer
from producers.wire import partition_for
from tests.e2e.conftest import make_fleet  # noqa: F401  (a fixture, re-exported for the benchmarks)
from tests.support.fake_cio import FakeCioClient, FakeCioProcess, start_fake_cio_process

#: The one workspace most benchmarks use, and its stand-in credentials.
WORKSPACE = "wsa"
SITE_ID = "site-a"
API_KEY = "key-a"

#: The repository root (worker processes are started from it so that ``tests.benchmarks.naive`` imports).
REPO_ROOT = Path(__file__).resolve().parents[2]


def env_int(name: str, default: int) -> int:
    """An integer knob of a benchmark, from the environment (``BENCH_*``)."""
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    """A float knob of a benchmark, from the environment (``BENCH_*``)."""
    return float(os.environ.get(name, default))


def workspace_options(url: str, **options: Any) -> dict[str, dict[str, Any]]:
    """The workspaces file content of the one benchmark workspace."""
    return {WORKSPACE: {"site_id": SITE_ID, "api_key": API_KEY, "track_url": url, **options}}


@pytest.fixture
def stand_in() -> Iterator[FakeCioProcess]:
    """The stand-in as a separate process (own GIL), answering at once, without schema validation."""
    with start_fake_cio_process(credentials={SITE_ID: API_KEY}, validate=False) as process:
        yield process


# --- events -----------------------------------------------------------------------------------------------------


def track_event(index: int, people: int = 500, tag: str = "b") -> dict[str, Any]:
    """A track event whose Customer.io operation carries ``id == messageId`` (for latency and partition maps)."""
    return {
        "type": "track",
        "userId": f"user-{index % people}",
        "event": "Bench Event",
        "messageId": f"{tag}-{index}",
        "timestamp": "2026-11-28T12:00:00.000Z",
        "properties": {"seq": index, "amount": index % 500, "plan": "premium"},
    }


def partition_of(message_id_index: int, people: int = 500, partitions: int = 16) -> int:
    """The partition ``track_event(index)`` lands in."""
    return partition_for({"userId": f"user-{message_id_index % people}"}, partitions)


def enqueue_bulk(producer: Producer, events: Sequence[dict[str, Any]], chunk: int = 5_000) -> float:
    """Enqueue ``events`` as fast as the producer goes; returns the events per second it reached."""
    started = time.perf_counter()
    for start in range(0, len(events), chunk):
        result = producer.enqueue_many(events[start : start + chunk])
        assert result.enqueued == len(events[start : start + chunk]), result.errors
    return len(events) / (time.perf_counter() - started)


@dataclass
class Feeder:
    """Enqueues ``total`` events in a thread, keeping the workspace's backlog under ``max_backlog``."""

    producer: Producer
    total: int
    max_backlog: int = 100_000
    chunk: int = 5_000
    make: Callable[[int], dict[str, Any]] = track_event
    enqueued: int = 0
    _thread: threading.Thread | None = None

    def start(self) -> Feeder:
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while self.enqueued < self.total:
            if self.producer.backlog() > self.max_backlog:
                time.sleep(0.05)
                continue
            count = min(self.chunk, self.total - self.enqueued)
            events = [self.make(self.enqueued + offset) for offset in range(count)]
            self.enqueued += self.producer.enqueue_many(events).enqueued

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


def paced_enqueue(
    producer: Producer, rate: float, duration_s: float, *, tick_s: float = 0.01, tag: str = "lat", start: int = 0
) -> dict[str, float]:
    """Enqueue ``rate`` events per second for ``duration_s`` in small ticks; returns messageId → enqueue time."""
    sent: dict[str, float] = {}
    per_tick = max(1, round(rate * tick_s))
    began = time.monotonic()
    index = start
    while (elapsed := time.monotonic() - began) < duration_s:
        due = int(elapsed * rate) + per_tick - (index - start)
        if due > 0:
            events = [track_event(index + offset, tag=tag) for offset in range(due)]
            stamp = time.time()
            producer.enqueue_many(events)
            sent.update((event["messageId"], stamp) for event in events)
            index += due
        time.sleep(max(0.0, began + (index - start) / rate - time.monotonic()))
    return sent


# --- measuring --------------------------------------------------------------------------------------------------


@dataclass
class Throughput:
    """Accepted operations over the window from the first acceptance seen to the last one needed."""

    events: int
    seconds: float
    requests: int
    statuses: dict[str, int]

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def watch_throughput(
    client: FakeCioClient,
    target: int,
    timeout_s: float,
    site_id: str = SITE_ID,
    on_first: Callable[[], None] = lambda: None,
) -> Throughput:
    """Poll the stand-in's counters every 50 ms until ``target`` operations of ``site_id`` are accepted.

    The window opens at the first poll that sees an acceptance (so worker start-up is not counted; ``on_first`` is
    called then) and the operations accepted by then are left out of the rate.

    Raises:
        AssertionError: fewer than ``target`` arrived within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    first: tuple[float, int, dict[str, Any]] | None = None
    while time.monotonic() < deadline:
        stats = client.stats()
        accepted = int(stats["accepted_by_site"].get(site_id, 0))
        now = time.monotonic()
        if first is None and accepted > 0:
            first = (now, accepted, stats)
            on_first()
        if accepted >= target and first is not None:
            return between(first[2], stats, now - first[0], target - first[1])
        time.sleep(0.05)
    raise AssertionError(f"only {accepted} of {target} operations accepted within {timeout_s:.0f} s")


def between(before: dict[str, Any], after: dict[str, Any], seconds: float, events: int) -> Throughput:
    """The requests and statuses the stand-in counted from ``before`` to ``after`` (its ``stats()``)."""
    statuses0 = before["requests_by_status"]
    statuses = {k: v - statuses0.get(k, 0) for k, v in after["requests_by_status"].items()}
    return Throughput(events, seconds, after["requests"] - before["requests"], statuses)


def count_in_window(client: FakeCioClient, seconds: float, site_id: str = SITE_ID) -> Throughput:
    """Accepted operations and requests over a fixed window that opens at the first acceptance."""
    (window,) = count_in_windows(client, [(0.0, seconds)], site_id)
    return window


def count_in_windows(
    client: FakeCioClient, windows: Sequence[tuple[float, float]], site_id: str = SITE_ID
) -> list[Throughput]:
    """Accepted operations and requests over each ``(start, end)`` window, in seconds after the first acceptance."""
    stats = client.stats()
    while int(stats["accepted_by_site"].get(site_id, 0)) == 0:
        time.sleep(0.05)
        stats = client.stats()
    began = time.monotonic()
    snapshots: dict[float, tuple[float, dict[str, Any]]] = {0.0: (began, stats)}
    for offset in sorted({edge for window in windows for edge in window} - {0.0}):
        time.sleep(max(0.0, began + offset - time.monotonic()))
        snapshots[offset] = (time.monotonic(), client.stats())
    results = []
    for start, end in windows:
        (opened, before), (closed, after) = snapshots[start], snapshots[end]
        events = int(after["accepted_by_site"][site_id]) - int(before["accepted_by_site"][site_id])
        results.append(between(before, after, closed - opened, events))
    return results


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, nearest-rank."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process ``pid`` (all its threads) has used so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """The resident set size of a process, from ``/proc/<pid>/status`` (KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class RssSampler:
    """Samples a process's RSS every ``interval_s`` in a thread."""

    pid: int
    interval_s: float = 1.0
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        began = time.monotonic()
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic() - began, rss_kib(self.pid)))
            except OSError:
                return
            self._stop.wait(self.interval_s)

    def summary(self) -> dict[str, float]:
        """Min, max and last RSS (MiB), and the means of the second and last fifths of the run."""
        mib = [kib / 1024 for _, kib in self.samples]
        fifth = max(1, len(mib) // 5)
        return {
            "min": min(mib),
            "max": max(mib),
            "last": mib[-1],
            "second_fifth": statistics.mean(mib[fifth : 2 * fifth] or mib),
            "last_fifth": statistics.mean(mib[-fifth:]),
        }

    def trajectory(self, points: int = 12) -> str:
        """About ``points`` samples spread over the run, as ``t=…s:…MiB`` pairs."""
        step = max(1, len(self.samples) // points)
        return ", ".join(f"{t:.0f}s:{kib / 1024:.0f}" for t, kib in self.samples[::step])


def report(title: str, rows: Iterable[tuple[str, Any]]) -> None:
    """Print one benchmark's figures as an aligned block."""
    print(f"\n=== {title}")
    for name, value in rows:
        text = f"{value:,.1f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else value
        print(f"  {name:<44} {text}")


# --- the naive baseline worker ----------------------------------------------------------------------------------


def naive_env(redis_url: str, prefix: str, track_url: str) -> dict[str, str]:
    """The environment of the naive baseline worker (``tests/benchmarks/naive/app.py``)."""
    return {
        "NAIVE_BROKER_URL": redis_url,
        "NAIVE_PREFIX": prefix,
        "NAIVE_TRACK_URL": track_url,
        "NAIVE_SITE_ID": SITE_ID,
        "NAIVE_API_KEY": API_KEY,
    }


def start_naive_worker(env: dict[str, str], concurrency: int, log_path: Path) -> subprocess.Popen[bytes]:
    """One naive baseline worker process, threads pool, same Redis."""
    command = [sys.executable, "-m", "celery", "-A", "tests.benchmarks.naive.app", "worker", "--pool", "threads"]
    command += ["--concurrency", str(concurrency), "--loglevel", "WARNING", "--without-mingle", "--without-gossip"]
    command += ["--queues", f"{env['NAIVE_PREFIX']}.naive"]
    with log_path.open("ab") as output:
        return subprocess.Popen(
            command, env={**os.environ, **env}, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT
        )


def forget_unacked(client: redis.Redis, queues: set[str], unacked_key: str = "unacked") -> int:
    """Drop kombu's unacked records of ``queues`` (left by a SIGKILLed worker), so they are never restored.

    Only records whose routing key is one of ``queues`` are touched; other users' records stay.
    """
    import orjson

    dropped = 0
    for tag, raw in client.hscan_iter(unacked_key, count=1000):
        try:
            routing_key = orjson.loads(raw)[2]
        except (orjson.JSONDecodeError, IndexError, TypeError):
            continue
        if routing_key in queues:
            client.hdel(unacked_key, tag)
            client.zrem(f"{unacked_key}_index", tag)
            dropped += 1
    return dropped
