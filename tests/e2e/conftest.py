"""End-to-end fixtures: real worker processes, a real stand-in on 127.0.0.1, real Redis."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from producers import Producer
from producers.connect import sync_client
from producers.keys import drain_queue, stream_key
from tests.conftest import TEST_REDIS_URL
from tests.support.rabbitmq import TEST_AMQP_URL, delete_queue
from tests.support.redis_server import RedisServer
from worker.local.fake_customerio import FakeCustomerIO
from worker.local.localfleet import start_worker, stop_worker, wait_until_registered
from worker.settings import MAX_DEFAULT_PARTITIONS


@dataclass
class Fleet:
    """Worker processes sharing one key prefix and one workspaces file."""

    redis_url: str
    prefix: str
    workspaces_file: Path
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def worker_env(self, **overrides: str) -> dict[str, str]:
        env = {
            "CIO_REDIS_URL": self.redis_url,
            "CIO_KEY_PREFIX": self.prefix,
            "CIO_WORKSPACES_FILE": str(self.workspaces_file),
            "CIO_METRICS_PORT": "0",
            "CIO_SWEEP_INTERVAL_S": "0.5",
            "CIO_LOG_FORMAT": "json",
            "CIO_LOG_LEVEL": "INFO",
        }
        return {**env, **self.env, **overrides}

    def launch(self, count: int = 1, concurrency: int = 8, **overrides: str) -> list[subprocess.Popen[bytes]]:
        """Start ``count`` workers without waiting for them."""
        started = []
        for _ in range(count):
            log_path = self.log_dir / f"worker-{len(self.processes)}.log"
            process = start_worker(
                self.worker_env(**overrides), concurrency=concurrency, queue=f"{self.prefix}.drain", log_path=log_path
            )
            self.processes.append(process)
            started.append(process)
        return started

    def start(self, count: int = 1, concurrency: int = 8, **overrides: str) -> list[subprocess.Popen[bytes]]:
        """Start ``count`` workers and wait until each has sent its first heartbeat."""
        started = self.launch(count, concurrency, **overrides)
        client = sync_client(self.redis_url)
        wait_until_registered(client, self.prefix, pids=[process.pid for process in started])
        client.close()
        return started

    def stop(self) -> None:
        for process in self.processes:
            stop_worker(process, grace_s=30)
        self.processes.clear()

    def logs(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.log_dir.glob("worker-*.log")))

    def producer(self, workspace: str, **options: Any) -> Producer:
        return Producer(self.redis_url, workspace, key_prefix=self.prefix, **options)


def write_workspaces(path: Path, workspaces: dict[str, dict[str, Any]]) -> Path:
    lines = []
    for name, options in workspaces.items():
        lines.append(f"[workspaces.{name}]")
        for key, value in options.items():
            lines.append(f"{key} = {value!r}" if not isinstance(value, bool) else f"{key} = {str(value).lower()}")
    path.write_text("\n".join(lines).replace("'", '"') + "\n", encoding="utf-8")
    return path


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private ``redis-server`` on a port of its own, stopped after the test: to restart without disturbing
    anybody, or to be a fleet's standalone broker."""
    directory = tmp_path / "redis-server"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stand_in() -> Iterator[FakeCustomerIO]:
    fake = FakeCustomerIO(credentials={"site-a": "key-a", "site-b": "key-b", "site-c": "key-c"}).start()
    yield fake
    fake.stop()


#: The brokers a fleet's drain tasks may travel on: the events Redis (on the test cluster, the shared single Redis,
#: since a cluster cannot be one), or RabbitMQ (``CIO_BROKER_URL``); ``unset``: no ``CIO_BROKER_URL`` whatever the
#: events Redis is.
BROKERS = {"redis": None, "amqp": TEST_AMQP_URL, "unset": None}


@pytest.fixture
def make_fleet(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    """Fleets of the test: ``make(workspaces, broker="amqp", CIO_X="...")``; RabbitMQ queues deleted afterwards.

    On the test Redis Cluster (tests marked ``single_and_cluster``), the broker is the shared single Redis unless
    the test names one: a cluster cannot be Celery's broker.
    """
    fleets: list[Fleet] = []

    def make(workspaces: dict[str, dict[str, Any]], broker: str = "redis", **env: str) -> Fleet:
        log_dir = tmp_path / f"logs-{len(fleets)}"
        log_dir.mkdir()
        path = write_workspaces(tmp_path / f"workspaces-{len(fleets)}.toml", workspaces)
        broker_url = BROKERS[broker]
        if broker == "redis" and redis_url.startswith("redis+cluster://"):
            broker_url = TEST_REDIS_URL
        if broker_url is not None:
            env = {"CIO_BROKER_URL": broker_url, **env}
        fleet = Fleet(redis_url, key_prefix, path, log_dir, env=dict(env))
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop()
    brokers = {fleet.env["CIO_BROKER_URL"] for fleet in fleets if "CIO_BROKER_URL" in fleet.env}
    for url in brokers:
        if url.startswith("amqp"):
            delete_queue(drain_queue(key_prefix), url)
        elif url != redis_url:  # a standalone Redis broker (a cluster's): its queue and kombu's keys of the test
            forget_broker_keys(url, key_prefix)


def forget_broker_keys(url: str, prefix: str) -> None:
    """Delete the test's keys on a standalone Redis broker (its drain queue, kombu's bindings and unacked keys)."""
    client = redis.Redis.from_url(url)
    for pattern in (f"{prefix}.*", f"_kombu.binding*.{prefix}.*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    client.close()


def standin_workspaces(url: str, names: str = "abc", **options: Any) -> dict[str, dict[str, Any]]:
    return {
        f"ws{name}": {"site_id": f"site-{name}", "api_key": f"key-{name}", "track_url": url, **options}
        for name in names
    }


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def backlog(client: redis.Redis, prefix: str, workspace: str, partitions: int = MAX_DEFAULT_PARTITIONS) -> int:
    """Events waiting in the workspace's first ``partitions`` streams (by default, any a default count may have)."""
    pipe = client.pipeline(transaction=False)
    for p in range(partitions):
        pipe.xlen(stream_key(prefix, workspace, p))
    return sum(int(length) for length in pipe.execute())


def wait_until_drained(client: redis.Redis, prefix: str, workspace: str, timeout_s: float = 10) -> None:
    """Wait until the workspace's streams are empty (a batch is settled just after Customer.io accepts it)."""
    wait_for(lambda: backlog(client, prefix, workspace) == 0, timeout_s, f"{workspace}'s streams to empty")
