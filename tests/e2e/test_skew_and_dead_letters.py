"""Real workers under clock skew, and what dead letters keep: every field of the entry, and no secret."""

from __future__ import annotations

import signal

import orjson
import pytest
import redis

from producers._wire import lease_key, stream_key
from tests.e2e.conftest import standin_workspaces, wait_for

pytestmark = pytest.mark.e2e


def track(n: int, user: str = "u") -> bytes:
    return orjson.dumps({"type": "track", "userId": f"{user}{n}", "event": "Ordered", "messageId": f"m{n}"})


def xadd_ahead_of_the_clock(client: redis.Redis, key: str, ahead_ms: int, event: bytes) -> None:
    """XADD with an explicit id ``ahead_ms`` past Redis's clock (as after a failover to a slower replica)."""
    seconds, micros = client.time()
    client.xadd(key, {"v": "1", "event": event}, id=f"{seconds * 1000 + micros // 1000 + ahead_ms}-0")


def accepted_ids(stand_in) -> list[str]:
    return sorted(record["operation"]["id"] for record in stand_in.accepted())


def test_an_entry_ahead_of_the_clock_neither_stalls_its_partition_nor_starves_its_workspace(
    stand_in, make_fleet, redis_client, key_prefix
):
    # Given one worker with a single slot for the workspace (2 threads, half of them at most per workspace)
    fleet = make_fleet(standin_workspaces(stand_in.url, "a", partitions=2), CIO_WORKSPACE_MAX_SHARE="0.5")
    fleet.start(1, concurrency=2)
    # When partition 0's head has an id 60 s ahead of Redis's clock, and partition 1 gets an ordinary event
    xadd_ahead_of_the_clock(redis_client, stream_key(key_prefix, "wsa", 0), 60_000, track(0))
    redis_client.xadd(stream_key(key_prefix, "wsa", 1), {"v": "1", "event": track(1)})
    # Then both are delivered within seconds, not after the skew (today: 60 s or more)
    wait_for(lambda: accepted_ids(stand_in) == ["m0", "m1"], 10, "both events delivered")


def test_a_worker_told_to_stop_during_a_long_linger_exits_promptly_and_loses_nothing(
    stand_in, make_fleet, redis_client, key_prefix
):
    # Given a worker lingering (up to 5 s) on a lone entry whose id is 60 s ahead of the clock
    fleet = make_fleet(standin_workspaces(stand_in.url, "a", partitions=1), CIO_BATCHING__LINGER_MS="5000")
    (worker,) = fleet.start(1)
    xadd_ahead_of_the_clock(redis_client, stream_key(key_prefix, "wsa", 0), 60_000, track(0))
    lease = lease_key(key_prefix, "wsa", 0)
    wait_for(lambda: redis_client.get(lease) not in (None, b"kicked", b"retry"), 10, "a drainer to own the partition")
    # When it is told to stop
    worker.send_signal(signal.SIGTERM)
    # Then it exits within seconds (today it sleeps out the skew: a minute)
    wait_for(lambda: worker.poll() is not None, 20, "the worker to exit")
    assert worker.returncode == 0
    # And the event is delivered by the next worker
    fleet.start(1)
    wait_for(lambda: accepted_ids(stand_in) == ["m0"], 20, "the event delivered")
