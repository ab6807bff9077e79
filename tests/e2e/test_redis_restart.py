"""A Redis restart (a failover) while drain tasks are in flight: the worker survives and every event arrives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.e2e.conftest import backlog, standin_workspaces, wait_for
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

EVENTS = 40


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis, so that this test can restart it without disturbing anybody."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """Every fixture of this module (fleet, prefix, client) uses the private Redis."""
    return redis_server.url


def unacked_drain_tasks(client: redis.Redis, prefix: str) -> int:
    return int(client.hlen(f"{prefix}.unacked"))


def test_a_busy_worker_survives_a_redis_restart_and_delivers_everything(
    stand_in, make_fleet, redis_server, redis_client, key_prefix
):
    # Given one worker draining two partitions slowly (2 events a request, 1 s an answer), on a Redis of its own,
    # with threads to spare: it holds unacknowledged drain tasks and waits for more (BRPOP) at the same time
    stand_in.set_faults([{"latency_ms": 1000}])
    fleet = make_fleet(
        standin_workspaces(stand_in.url, "a"),
        CIO_BATCHING__MAX_EVENTS="2",
        CIO_LEASE_TTL_S="5",
        CIO_HTTP__TIMEOUT_S="2",
        CIO_HTTP__CONNECT_TIMEOUT_S="1",
    )
    (worker,) = fleet.start(1, concurrency=8)
    with fleet.producer("wsa") as producer:
        producer.enqueue_many([track(n) for n in range(EVENTS)])
    # When Redis stops while both partitions' drain tasks wait for an answer (unacknowledged, for a second or so)
    wait_for(lambda: unacked_drain_tasks(redis_client, key_prefix) >= 2, 30, "two drain tasks in flight")
    redis_server.stop()
    wait_for(lambda: "Connection to broker lost" in fleet.logs(), 30, "the worker to see Redis gone")
    # And starts again with its data, Customer.io answering at once from now on
    redis_server.start()
    stand_in.set_faults([])
    first = {f"m{n}" for n in range(EVENTS)}
    wait_for(lambda: worker.poll() is not None or settled(stand_in, redis_client, key_prefix, first), 60, "settled")
    # Then the worker is still running, and takes new drain tasks: events enqueued now are delivered too
    with fleet.producer("wsa") as producer:
        producer.enqueue_many([track(n) for n in range(EVENTS, 2 * EVENTS)])
    every = {f"m{n}" for n in range(2 * EVENTS)}
    wait_for(lambda: worker.poll() is not None or settled(stand_in, redis_client, key_prefix, every), 60, "settled")
    assert worker.poll() is None, "the worker exited after the Redis restart"
    assert accepted_ids(stand_in) == every


def settled(stand_in, client: redis.Redis, prefix: str, expected: set[str]) -> bool:
    """Every expected event accepted by Customer.io and deleted from its stream."""
    return accepted_ids(stand_in) >= expected and backlog(client, prefix, "wsa") == 0


def track(n: int) -> dict[str, str]:
    """Events of two people: two partitions."""
    return {"type": "track", "userId": f"u{n % 2}", "event": "Ordered", "messageId": f"m{n}"}


def accepted_ids(stand_in) -> set[str]:
    return {record["operation"]["id"] for record in stand_in.accepted()}
