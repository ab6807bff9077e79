"""The worker's HTTP client under many threads: does a request queue behind the others, and which shape avoids it.

Run: ``.venv/bin/pytest tests/benchmarks/bench_http_client.py -s -o addopts=""`` (about 2 min).
Knobs: ``BENCH_HTTP_THREADS`` (``32,96``), ``BENCH_HTTP_LATENCIES_MS`` (``0,150``), ``BENCH_HTTP_SECONDS`` (4 per cell),
``BENCH_HTTP_SHAPES`` (all of ``SHAPES``, comma-separated).

N threads each post 200-operation batches of realistic events (``producer_ab.realistic_events``, about 100 KB a body)
back to back, for a few seconds, to the stand-in running as its own process (``start_fake_cio_process``), which
answers after 0 or 150 ms. For each client shape it prints, per request: the wall time seen by the posting thread
(p50/p99), the stand-in's own service time for the same requests (p50/p99, its ``/_fake/requests`` records), the
time from ``post()`` to the first request header going out ("before the wire": building the request, waiting for a
pooled connection, handing over to the event loop; httpcore's ``http11.send_request_headers`` trace), the requests
per second, the CPU the posting process spent per request, and the requests that failed. Nothing is asserted.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import pytest

from tests.benchmarks.conftest import API_KEY, SITE_ID, env_float, percentile, report
from tests.benchmarks.producer_ab import realistic_events
from tests.support.fake_cio import FakeCioProcess, start_fake_cio_process
from worker.mapping.transform import Deliver, TransformOptions, transform
from worker.pipeline.batching import batch_body

pytestmark = pytest.mark.timeout(1_800)

#: The header httpcore traces as the request going on the wire.
WIRE_EVENT = "http11.send_request_headers.started"
AUTH = (SITE_ID, API_KEY)
HEADERS = {"Content-Type": "application/json", "User-Agent": "cio-fleet"}


@dataclass
class Sample:
    """One request: its wall time and its time before the wire, in seconds."""

    wall_s: float
    before_wire_s: float


class Shape(Protocol):
    """A way of posting from many threads."""

    def post(self, url: str, body: bytes) -> Sample: ...

    def close(self) -> None: ...


def wire_probe() -> tuple[dict[str, Any], list[float]]:
    """The ``trace`` extension of one request and the list its wire time lands in."""
    stamp: list[float] = []

    def trace(name: str, _info: dict[str, Any]) -> None:
        if name == WIRE_EVENT:
            stamp.append(time.perf_counter())

    return {"trace": trace}, stamp


def timed_post(client: httpx.Client, url: str, body: bytes) -> Sample:
    extensions, stamp = wire_probe()
    started = time.perf_counter()
    response = client.post(url, content=body, auth=AUTH, extensions=extensions)
    ended = time.perf_counter()
    response.raise_for_status()
    return Sample(ended - started, stamp[0] - started)


def sync_client(connections: int) -> httpx.Client:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.Client(timeout=30.0, limits=limits, headers=HEADERS, follow_redirects=False)


class SharedClient:
    """One ``httpx.Client`` for every thread (the worker's shape), with a pool of ``connections``."""

    def __init__(self, connections: int) -> None:
        self._client = sync_client(connections)

    def post(self, url: str, body: bytes) -> Sample:
        return timed_post(self._client, url, body)

    def close(self) -> None:
        self._client.close()


class ClientPerThread:
    """One ``httpx.Client`` (one connection) per posting thread."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()

    def post(self, url: str, body: bytes) -> Sample:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = sync_client(1)
            with self._lock:
                self._clients.append(client)
        return timed_post(client, url, body)

    def close(self) -> None:
        for client in self._clients:
            client.close()


class AsyncLoop:
    """One ``httpx.AsyncClient`` on an event loop thread; the posting threads hand requests over and wait."""

    def __init__(self, connections: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="http-loop", daemon=True)
        self._thread.start()
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self._client = httpx.AsyncClient(timeout=30.0, limits=limits, headers=HEADERS, follow_redirects=False)

    async def _post(self, url: str, body: bytes, stamp: list[float]) -> httpx.Response:
        async def trace(name: str, _info: dict[str, Any]) -> None:
            if name == WIRE_EVENT:
                stamp.append(time.perf_counter())

        return await self._client.post(url, content=body, auth=AUTH, extensions={"trace": trace})

    def post(self, url: str, body: bytes) -> Sample:
        stamp: list[float] = []
        started = time.perf_counter()
        future: Future[httpx.Response] = asyncio.run_coroutine_threadsafe(self._post(url, body, stamp), self._loop)
        response = future.result()
        ended = time.perf_counter()
        response.raise_for_status()
        return Sample(ended - started, stamp[0] - started)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


#: The shapes measured, by name: what it is, and a factory given the thread count.
SHAPES: dict[str, tuple[str, Callable[[int], Shape]]] = {
    "shared": ("one shared Client, pool 100 (the worker's default)", lambda _threads: SharedClient(100)),
    "shared-half": ("one shared Client, pool of threads/2", lambda threads: SharedClient(max(1, threads // 2))),
    "per-thread": ("one Client (one connection) per thread", lambda _threads: ClientPerThread()),
    "asyncio": ("asyncio loop thread, one AsyncClient, pool = threads", lambda threads: AsyncLoop(threads)),
}


@dataclass
class Cell:
    """The figures of one shape at one thread count and one answer time."""

    samples: list[Sample] = field(default_factory=list)
    service_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_s: float = 0.0


def run_cell(shape: Shape, url: str, body: bytes, threads: int, seconds: float) -> Cell:
    """``threads`` threads post back to back for ``seconds`` after one warm-up request each."""
    cell = Cell()
    lock = threading.Lock()
    ready = threading.Barrier(threads + 1)
    stop = threading.Event()

    def work() -> None:
        shape.post(url, body)  # warm-up: the connection exists before the clock starts
        ready.wait()
        mine: list[Sample] = []
        errors: list[str] = []
        while not stop.is_set():
            try:
                mine.append(shape.post(url, body))
            except httpx.HTTPError as exc:  # counted and printed: a loaded machine may time a request out
                errors.append(f"{type(exc).__name__}: {exc}")
        with lock:
            cell.samples.extend(mine)
            cell.errors.extend(errors)

    workers = [threading.Thread(target=work, name=f"post-{n}", daemon=True) for n in range(threads)]
    for worker in workers:
        worker.start()
    ready.wait()
    began, cpu = time.perf_counter(), time.process_time()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    cell.seconds, cell.cpu_s = time.perf_counter() - began, time.process_time() - cpu
    return cell


def batch_of_200() -> bytes:
    options = TransformOptions()
    encoded = [op for e in realistic_events(400) if isinstance(o := transform(e, options), Deliver) for op in o.encoded]
    return batch_body(encoded[:200])


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


@pytest.fixture
def stand_in_process() -> Iterator[Callable[[], FakeCioProcess]]:
    """Start the stand-in (its own process); stopped after the test."""
    started: list[FakeCioProcess] = []

    def start() -> FakeCioProcess:
        process = start_fake_cio_process(credentials={SITE_ID: API_KEY}, validate=False)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def test_http_client_shapes_under_many_threads(stand_in_process: Callable[[], FakeCioProcess]) -> None:
    seconds = env_float("BENCH_HTTP_SECONDS", 4.0)
    body = batch_of_200()
    shapes = env_list("BENCH_HTTP_SHAPES", ",".join(SHAPES))
    stand_in = stand_in_process()
    for latency_ms in (float(value) for value in env_list("BENCH_HTTP_LATENCIES_MS", "0,150")):
        url = f"{stand_in.url}/api/v2/batch"
        for threads in (int(value) for value in env_list("BENCH_HTTP_THREADS", "32,96")):
            for name in shapes:
                title, factory = SHAPES[name]
                shape = factory(threads)
                try:
                    stand_in.client.reset()  # also drops the fault rules: the answer time is set again
                    stand_in.client.set_faults({"latency_ms": latency_ms} if latency_ms else None)
                    cell = run_cell(shape, url, body, threads, seconds)
                finally:
                    shape.close()
                service = [r["duration_s"] for r in stand_in.client.requests() if r["path"] == "/api/v2/batch"]
                print_cell(title, threads, latency_ms, len(body), cell, service)


def print_cell(name: str, threads: int, latency_ms: float, size: int, cell: Cell, service: list[float]) -> None:
    walls = [s.wall_s * 1000 for s in cell.samples] or [0.0]
    waits = [s.before_wire_s * 1000 for s in cell.samples] or [0.0]
    served = [s * 1000 for s in service] or [0.0]
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    report(
        f"{name}: {threads} threads, stand-in answering after {latency_ms:.0f} ms, {size:,} B bodies (load {load})",
        [
            ("requests/s", len(cell.samples) / cell.seconds),
            ("wall p50 / p99 (ms)", f"{percentile(walls, 50):.1f} / {percentile(walls, 99):.1f}"),
            ("stand-in service p50 / p99 (ms)", f"{percentile(served, 50):.1f} / {percentile(served, 99):.1f}"),
            ("before the wire p50 / p99 (ms)", f"{percentile(waits, 50):.2f} / {percentile(waits, 99):.1f}"),
            ("posting process CPU per request (us)", cell.cpu_s * 1e6 / max(1, len(cell.samples))),
            ("failed requests", len(cell.errors)),
        ],
    )
