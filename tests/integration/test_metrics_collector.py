"""The Redis state collector against the real Redis: fleet truth read at scrape time."""

from __future__ import annotations

import pytest
import redis
from prometheus_client import generate_latest
from redis.backoff import NoBackoff
from redis.retry import Retry

from producers.keys import dlq_key, stream_key
from worker.ops.metrics import FleetMetrics
from worker.store.ratelimit import WorkspaceLimiter

pytestmark = pytest.mark.single_and_cluster

PARTITIONS = 4


def redis_now_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000


def unreachable_redis() -> redis.Redis:
    """A client of a port nobody listens on, failing at once instead of retrying."""
    return redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))


def watched(client: redis.Redis, prefix: str, **workspaces: int) -> FleetMetrics:
    metrics = FleetMetrics()
    metrics.watch_redis(client, prefix, workspaces, dlq_max_entries=4, dlq_alarm_ratio=0.5)
    return metrics


def value(metrics: FleetMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_enqueued_counts_every_entry_ever_added_even_after_delivery(redis_client: redis.Redis, key_prefix: str) -> None:
    """entries-added survives XDEL, so the counter never goes down when events are delivered."""
    ids = [redis_client.xadd(stream_key(key_prefix, "acme", n % 2), {"v": "1", "event": "{}"}) for n in range(5)]
    redis_client.xdel(stream_key(key_prefix, "acme", 0), ids[0], ids[2])
    metrics = watched(redis_client, key_prefix, acme=PARTITIONS)
    assert value(metrics, "cio_fleet_events_enqueued_total", workspace="acme", type="other") == 5
    assert value(metrics, "cio_fleet_backlog_events", workspace="acme") == 3


def test_enqueued_events_are_counted_by_the_type_the_producer_recorded(redis_client: redis.Redis, key_prefix: str):
    from producers import Producer

    with Producer(redis_client=redis_client, workspace="acme", key_prefix=key_prefix, partitions=2, kick=False) as p:
        p.track("u1", "Bought")
        p.track("u2", "Bought")
        p.identify("u1", {"plan": "pro"})
    redis_client.xadd(stream_key(key_prefix, "acme", 0), {"v": "1", "event": "{}"})
    metrics = watched(redis_client, key_prefix, acme=PARTITIONS)
    assert value(metrics, "cio_fleet_events_enqueued_total", workspace="acme", type="track") == 2
    assert value(metrics, "cio_fleet_events_enqueued_total", workspace="acme", type="identify") == 1
    assert value(metrics, "cio_fleet_events_enqueued_total", workspace="acme", type="other") == 1


def test_the_oldest_event_age_comes_from_the_first_entry_id(redis_client: redis.Redis, key_prefix: str) -> None:
    """An entry added with an id 30 s in the past is 30 s old, whichever partition holds it."""
    old = redis_now_ms(redis_client) - 30_000
    redis_client.xadd(stream_key(key_prefix, "acme", 3), {"v": "1"}, id=f"{old}-0")
    redis_client.xadd(stream_key(key_prefix, "acme", 1), {"v": "1"})
    metrics = watched(redis_client, key_prefix, acme=PARTITIONS)
    age = value(metrics, "cio_fleet_oldest_event_age_seconds", workspace="acme")
    assert age is not None
    assert 29.5 <= age < 40


def test_the_age_follows_the_head_after_it_was_delivered(redis_client: redis.Redis, key_prefix: str) -> None:
    """Deleting the oldest entry makes the next one the oldest."""
    now = redis_now_ms(redis_client)
    key = stream_key(key_prefix, "acme", 0)
    redis_client.xadd(key, {"v": "1"}, id=f"{now - 60_000}-0")
    redis_client.xadd(key, {"v": "1"}, id=f"{now - 10_000}-0")
    redis_client.xdel(key, f"{now - 60_000}-0")
    age = value(watched(redis_client, key_prefix, acme=1), "cio_fleet_oldest_event_age_seconds", workspace="acme")
    assert age is not None
    assert 9.5 <= age < 20


def test_an_idle_workspace_reads_as_zeros(redis_client: redis.Redis, key_prefix: str) -> None:
    """No stream, no pause, no dead letters: every gauge is 0 and Redis is up."""
    metrics = watched(redis_client, key_prefix, quiet=PARTITIONS)
    for name in ("cio_fleet_backlog_events", "cio_fleet_oldest_event_age_seconds", "cio_fleet_dead_letter_entries"):
        assert value(metrics, name, workspace="quiet") == 0
    assert value(metrics, "cio_fleet_workspace_paused", workspace="quiet", reason="throttled") == 0
    assert value(metrics, "cio_fleet_redis_up") == 1


def test_pauses_dead_letters_and_the_alarm_are_read_from_redis(redis_client: redis.Redis, key_prefix: str) -> None:
    """A 429 pause, an auth pause and two dead letters (alarm at 0.5 x 4) show up per workspace."""
    limiter = WorkspaceLimiter(redis_client, key_prefix)
    limiter.pause("acme", 30, "throttled")
    limiter.pause_auth("acme", status=401, reason="unauthorized", fingerprint="0" * 16)
    for _ in range(2):
        redis_client.xadd(dlq_key(key_prefix, "acme"), {"event": "{}", "outcome": "rejected"})
    metrics = watched(redis_client, key_prefix, acme=PARTITIONS, other=2)
    assert value(metrics, "cio_fleet_workspace_paused", workspace="acme", reason="throttled") == 1
    assert value(metrics, "cio_fleet_workspace_paused", workspace="acme", reason="unauthorized") == 1
    assert value(metrics, "cio_fleet_dead_letter_entries", workspace="acme") == 2
    assert value(metrics, "cio_fleet_dead_letter_alarm", workspace="acme") == 1
    assert value(metrics, "cio_fleet_workspace_paused", workspace="other", reason="throttled") == 0
    assert value(metrics, "cio_fleet_dead_letter_alarm", workspace="other") == 0


def test_a_scrape_survives_redis_being_down() -> None:
    """Unreachable Redis gives cio_fleet_redis_up 0, not a failed scrape."""
    client = unreachable_redis()
    try:
        metrics = watched(client, "nowhere", acme=PARTITIONS)
        text = generate_latest(metrics.registry).decode()
        backlog = value(metrics, "cio_fleet_backlog_events", workspace="acme")
    finally:
        client.close()
    assert "cio_fleet_redis_up 0.0" in text
    assert backlog is None


def test_registration_reads_nothing_from_redis() -> None:
    """Building the collector on an unreachable Redis does not fail: I/O happens at scrape time only."""
    client = unreachable_redis()
    try:
        metrics = watched(client, "nowhere", acme=PARTITIONS)
    finally:
        client.close()
    assert metrics.registry is not None
