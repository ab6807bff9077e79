"""A Redis restart (a failover) while drain tasks are in flight: the worker survives and every event arrives."""

from __future__ import annotations

import httpx
import pytest
import redis

from tests.e2e.conftest import backlog, standin_workspaces, wait_for
from tests.support.redis_server import RedisServer
from worker.local.demo import free_port

pytestmark = pytest.mark.e2e

EVENTS = 40


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
        CIO_LEASE_TTL_S="10",
        CIO_HTTP__TIMEOUT_S="2",
        CIO_HTTP__CONNECT_TIMEOUT_S="1",
        CIO_REDIS_SOCKET_TIMEOUT_S="1",
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


def test_health_says_not_ready_while_the_broker_is_gone_and_ready_again_after(
    stand_in, make_fleet, redis_server, redis_client, key_prefix
):
    # Given a worker serving its health endpoints, on a Redis of its own
    port = free_port()
    fleet = make_fleet(standin_workspaces(stand_in.url, "a"), CIO_METRICS_PORT=str(port), CIO_SWEEP_INTERVAL_S="0.3")
    (worker,) = fleet.start(1, concurrency=2)
    wait_for(lambda: health(port, "healthz")[0] == 200, 30, "the worker to be ready")
    # When Redis stops, the consumer is reported down at once: not ready, but still alive (no restart for a blip)
    redis_server.stop()
    wait_for(lambda: health(port, "healthz")[0] == 503, 30, "readiness to fail")
    _, body = health(port, "healthz")
    assert body["parts"]["consumer"]["healthy"] is False, body
    assert health(port, "livez")[0] == 200
    # Then once Redis is back, the consumer reconnects and the worker is ready again
    redis_server.start()
    wait_for(lambda: health(port, "healthz")[0] == 200, 60, "readiness to come back")
    assert worker.poll() is None


def health(port: int, path: str) -> tuple[int, dict]:
    """Status and JSON body of ``/healthz`` or ``/livez``."""
    response = httpx.get(f"http://127.0.0.1:{port}/{path}", timeout=5)
    return response.status_code, response.json()
